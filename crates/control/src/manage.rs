//! Environments and API tokens. The rules that protect them — a token name is unique among
//! active tokens, an SDK key names an environment that exists, the last admin token cannot be
//! revoked — are checked inside the write transaction, so two replicas cannot both pass them.

use switchyard_api_types::Role;
use switchyard_storage::{EnvironmentRecord, NewToken, TokenRecord};

use crate::flags::{audit, require_environment};
use crate::tokens::{generate, Actor};
use crate::{Control, ControlError, Result, Written};

/// What a new token should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTokenRequest {
    /// A label, unique among active tokens (it names the token in the audit log).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The environment of an SDK key (required for `sdk`, refused for the others).
    pub environment: Option<String>,
}

/// A token just created: its record and the secret, shown this once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedToken {
    /// What is stored (the secret's hash only).
    pub record: TokenRecord,
    /// The whole token, `sy_<id>_<secret>`.
    pub token: String,
}

impl Control {
    /// Creates an environment.
    pub async fn create_environment(
        &self,
        name: &str,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<EnvironmentRecord>> {
        if !switchyard_engine::is_valid_key(name) {
            return Err(ControlError::bad_request(
                Some("name"),
                format!(
                    "invalid environment name `{name}`: use 1–128 letters, digits, `.`, `_` or `-`, starting with a letter or digit"
                ),
            ));
        }
        self.timed(async {
            let mut draft = self.begin().await?;
            if draft.snap.environment(name).is_some() {
                return Err(ControlError::AlreadyExists {
                    what: format!("environment `{name}`"),
                });
            }
            let record = draft
                .tx
                .create_environment(
                    name,
                    &audit(actor, "environment.create", Some(name), reason),
                )
                .await?;
            draft.snap.put_environment(record.clone());
            draft.finish(record, true).await
        })
        .await
    }

    /// Creates a token; the secret is in the result only.
    pub async fn create_token(
        &self,
        request: NewTokenRequest,
        actor: &Actor,
    ) -> Result<Written<CreatedToken>> {
        let name = request.name.trim();
        if name.is_empty() || name.len() > 128 {
            return Err(ControlError::bad_request(
                Some("name"),
                "`name` must be 1–128 characters",
            ));
        }
        match (request.role, &request.environment) {
            (Role::Sdk, None) => {
                return Err(ControlError::bad_request(
                    Some("environment"),
                    "an sdk key needs an `environment`",
                ))
            }
            (Role::Sdk, Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(ControlError::bad_request(
                    Some("environment"),
                    "only sdk keys are bound to an environment",
                ))
            }
        }
        let generated = generate()
            .map_err(|e| ControlError::Internal(format!("no random source for a token: {e}")))?;
        self.timed(async {
            let mut draft = self.begin().await?;
            if let Some(env) = &request.environment {
                require_environment(&draft.snap, env)?;
            }
            if draft
                .snap
                .tokens()
                .any(|t| t.revoked_at_ms.is_none() && t.name == name)
            {
                return Err(ControlError::AlreadyExists {
                    what: format!("an active token named `{name}`"),
                });
            }
            let record = draft
                .tx
                .create_token(
                    &NewToken {
                        id: generated.id.clone(),
                        name: name.to_owned(),
                        role: request.role,
                        environment: request.environment.clone(),
                        secret_hash: generated.secret_hash.clone(),
                    },
                    &audit(actor, "token.create", request.environment.as_deref(), None),
                )
                .await?;
            draft.snap.put_token(record.clone());
            draft
                .finish(
                    CreatedToken {
                        record,
                        token: generated.token.clone(),
                    },
                    true,
                )
                .await
        })
        .await
    }

    /// Revokes a token. The last active admin token cannot be revoked (checked inside the
    /// transaction, so two concurrent revocations cannot both pass).
    pub async fn revoke_token(
        &self,
        id: &str,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<TokenRecord>> {
        self.timed(async {
            let mut draft = self.begin().await?;
            let current = draft
                .tx
                .token(id)
                .await?
                .ok_or_else(|| ControlError::not_found(format!("token `{id}`")))?;
            if current.revoked_at_ms.is_some() {
                return Err(ControlError::Refused {
                    message: format!("token `{id}` is already revoked"),
                });
            }
            if current.role == Role::Admin
                && draft.tx.count_active_tokens(Some(Role::Admin)).await? <= 1
            {
                return Err(ControlError::Refused {
                    message: "this is the last admin token; create another admin token before revoking it"
                        .to_owned(),
                });
            }
            let record = draft
                .tx
                .revoke_token(id, &audit(actor, "token.revoke", None, reason))
                .await?;
            draft.snap.put_token(record.clone());
            draft.finish(record, true).await
        })
        .await
    }
}
