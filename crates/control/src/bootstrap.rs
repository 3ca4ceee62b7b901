//! The first start, as one transaction: the default environments, the first admin token,
//! the example flags and the `--import` files. Holding the global write lock for all of it
//! means replicas starting together on an empty database do it exactly once between them.

use switchyard_api_types::Role;
use switchyard_engine::Format;
use switchyard_storage::NewToken;

use crate::flags::audit;
use crate::import::{import_into, ImportMode, ImportReport};
use crate::snapshot::Source;
use crate::tokens::{generate, identify, Actor};
use crate::{Control, ControlError, Result};

/// Where the first admin token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminToken {
    /// This token (`SWITCHYARD_ADMIN_TOKEN`), stored if it is not already.
    Given(String),
    /// Generated when no admin token is active, and returned once.
    GenerateIfNone,
}

/// A flag file to import at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartImport {
    /// How diagnostics and the audit log name it.
    pub name: String,
    /// Its text.
    pub text: String,
    /// YAML or JSON.
    pub format: Format,
}

/// What to make sure of at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapPlan {
    /// Environments that must exist.
    pub environments: Vec<String>,
    /// The first admin token.
    pub admin_token: AdminToken,
    /// Flag-file text to seed once, on the first start of a store (the examples).
    pub seed: Option<StartImport>,
    /// Files imported at every start: what is missing is created, what differs is reported.
    pub imports: Vec<StartImport>,
    /// Replace what differs from the `imports` (audited), instead of reporting it.
    pub overwrite_imports: bool,
}

/// What the start did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootstrapReport {
    /// Environments created now.
    pub environments_created: Vec<String>,
    /// The admin token generated now (shown once), if one was.
    pub generated_admin_token: Option<String>,
    /// What seeding did, if it ran.
    pub seeded: Option<ImportReport>,
    /// What each import did, by file.
    pub imports: Vec<(String, ImportReport)>,
}

const SEEDED: &str = "examples_seeded";
/// The key stream URLs are signed with, shared by every replica.
const STREAM_KEY: &str = "stream_signing_key";

impl Control {
    /// Carries out `plan` in one transaction (see the module docs).
    pub async fn bootstrap(&self, plan: &BootstrapPlan) -> Result<BootstrapReport> {
        let system = Actor::system();
        let first_start = || Some("first start".to_owned());
        // Files are checked before anything is locked, with their lines.
        let mut docs = Vec::new();
        let store_mode = *self.source() == Source::Store;
        for file in plan.seed.iter().chain(&plan.imports).filter(|_| store_mode) {
            let (ruleset, diagnostics) =
                switchyard_engine::check_str(&file.text, file.format, Some(&file.name));
            let Some(ruleset) = ruleset else {
                return Err(ControlError::invalid(diagnostics));
            };
            docs.push(ruleset.to_document());
        }
        let mut draft = self.begin().await?;
        let mut report = BootstrapReport::default();
        for env in &plan.environments {
            if draft.snap.environment(env).is_none() {
                let record = draft
                    .tx
                    .create_environment(
                        env,
                        &audit(&system, "environment.create", Some(env), first_start()),
                    )
                    .await?;
                draft.snap.put_environment(record);
                report.environments_created.push(env.clone());
            }
        }

        let name_free = |draft: &crate::draft::Draft, name: &str| {
            !draft
                .snap
                .tokens()
                .any(|t| t.revoked_at_ms.is_none() && t.name == name)
        };
        match &plan.admin_token {
            AdminToken::Given(token) => {
                let (id, secret_hash) = identify(token);
                match draft.tx.token(&id).await? {
                    Some(t) if t.revoked_at_ms.is_some() => {
                        return Err(ControlError::Refused {
                            message: "SWITCHYARD_ADMIN_TOKEN names a token that was revoked; set it to a new value to create a fresh admin token".to_owned(),
                        })
                    }
                    Some(_) => {}
                    None => {
                        let name = if name_free(&draft, "bootstrap-admin") {
                            "bootstrap-admin".to_owned()
                        } else {
                            format!("bootstrap-admin-{id}")
                        };
                        let record = draft
                            .tx
                            .create_token(
                                &NewToken {
                                    id,
                                    name,
                                    role: Role::Admin,
                                    environment: None,
                                    secret_hash,
                                },
                                &audit(&system, "token.create", None, first_start()),
                            )
                            .await?;
                        draft.snap.put_token(record);
                    }
                }
            }
            AdminToken::GenerateIfNone => {
                if draft.tx.count_active_tokens(Some(Role::Admin)).await? == 0 {
                    let generated = generate().map_err(|e| {
                        ControlError::Internal(format!("no random source for a token: {e}"))
                    })?;
                    let name = if name_free(&draft, "bootstrap-admin") {
                        "bootstrap-admin".to_owned()
                    } else {
                        format!("bootstrap-admin-{}", generated.id)
                    };
                    let record = draft
                        .tx
                        .create_token(
                            &NewToken {
                                id: generated.id.clone(),
                                name,
                                role: Role::Admin,
                                environment: None,
                                secret_hash: generated.secret_hash.clone(),
                            },
                            &audit(&system, "token.create", None, first_start()),
                        )
                        .await?;
                    draft.snap.put_token(record);
                    report.generated_admin_token = Some(generated.token);
                }
            }
        }

        let stream_key = match draft.tx.meta(STREAM_KEY).await? {
            Some(hex_key) => hex::decode(hex_key.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok()),
            None => None,
        };
        let stream_key = match stream_key {
            Some(key) => key,
            None => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| {
                    ControlError::Internal(format!("no random source for a key: {e}"))
                })?;
                draft.tx.set_meta(STREAM_KEY, &hex::encode(key)).await?;
                key
            }
        };

        if store_mode {
            let mut docs = docs.into_iter();
            if plan.seed.is_some() {
                let doc = docs.next().unwrap_or_default();
                if draft.tx.meta(SEEDED).await?.is_none() {
                    let seeded = import_into(
                        &mut draft,
                        &doc,
                        ImportMode::MissingOnly,
                        &system,
                        first_start(),
                    )
                    .await?;
                    draft.tx.set_meta(SEEDED, "1").await?;
                    report.seeded = Some(seeded);
                }
            }
            for (file, doc) in plan.imports.iter().zip(docs) {
                let imported = import_into(
                    &mut draft,
                    &doc,
                    ImportMode::AtStart {
                        overwrite: plan.overwrite_imports,
                    },
                    &system,
                    Some(if plan.overwrite_imports {
                        format!("--import {} (overwriting)", file.name)
                    } else {
                        format!("--import {}", file.name)
                    }),
                )
                .await?;
                if !imported.drifted.is_empty() || !imported.drifted_segments.is_empty() {
                    tracing::warn!(
                        file = %file.name,
                        flags = ?imported.drifted,
                        segments = ?imported.drifted_segments,
                        "these differ from the import file and were left as changed at run time; start with --import-overwrite to replace them"
                    );
                }
                report.imports.push((file.name.clone(), imported));
            }
        }
        draft.commit().await?;
        self.set_stream_key(stream_key);
        Ok(report)
    }
}
