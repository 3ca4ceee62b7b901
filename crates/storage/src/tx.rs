//! [`WriteTx`]: a write transaction that holds the store's global write lock, so a caller can
//! read the current state, decide, and write, with nothing changing in between on any node.

use serde_json::json;
use sqlx::{Any, Transaction};

use crate::audit::{self, Change};
use crate::feed::{self, Changes, FeedKind, FeedOp, StoreState};
use crate::items::{self, ItemKind, FLAGS, SEGMENTS};
use crate::store::{fetch_token, read_state, subject, token_audit_json};
use crate::{
    AuditInfo, Backend, EnvironmentRecord, FlagRecord, ItemRecord, NewToken, Result, Role,
    SegmentRecord, Store, StoreError, TokenRecord, Write,
};

/// How many revisions of the change feed are kept (older rows are pruned; a replica that far
/// behind reloads everything).
pub const FEED_RETENTION: i64 = 10_000;

/// A write transaction holding the global write lock (see [`Store::begin_write`]).
///
/// Reads see the latest committed state and nothing else can commit a change until this
/// transaction ends, so read-check-write sequences are race-free across every process that
/// shares the database. Every change is audited and appended to the change feed in this
/// transaction. Dropping it (or an error) rolls everything back; [`WriteTx::commit`] with
/// nothing written rolls back too, so a no-op leaves the revision where it was.
pub struct WriteTx {
    tx: Transaction<'static, Any>,
    store: Store,
    revision: i64,
    now: i64,
    seq: i64,
    ruleset_changed: bool,
    wrote: bool,
}

/// What a committed [`WriteTx`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The store revision after the transaction (unchanged when nothing was written).
    pub revision: i64,
    /// Whether a flag or segment changed (and the ruleset revision is now `revision`).
    pub ruleset_changed: bool,
    /// How many changes it made.
    pub changes: i64,
}

impl std::fmt::Debug for WriteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTx")
            .field("revision", &self.revision)
            .field("changes", &self.seq)
            .finish_non_exhaustive()
    }
}

impl WriteTx {
    pub(crate) fn new(
        tx: Transaction<'static, Any>,
        store: Store,
        revision: i64,
        now: i64,
    ) -> Self {
        WriteTx {
            tx,
            store,
            revision,
            now,
            seq: 0,
            ruleset_changed: false,
            wrote: false,
        }
    }

    /// The transaction's connection (for the statement modules).
    pub(crate) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }

    /// Records that something was written, so commit commits.
    pub(crate) fn mark_written(&mut self) {
        self.wrote = true;
    }

    /// The revision this transaction commits as (the stored one is one less until then).
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The commit timestamp recorded in audit and feed rows, unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.now
    }

    /// What changed after `since` (up to the revision before this transaction), with the
    /// current rows; `None` when the feed no longer reaches back that far.
    pub async fn changes_since(&mut self, since: i64) -> Result<Option<Changes>> {
        let mut changes = feed::since(&mut self.tx, since).await?;
        if let Some(c) = &mut changes {
            // The revision row already carries this transaction's bump.
            c.revision = self.revision - 1;
        }
        Ok(changes)
    }

    /// Everything stored, as of the revision before this transaction.
    pub async fn state(&mut self) -> Result<StoreState> {
        let mut state = read_state(&mut self.tx).await?;
        state.revision = self.revision - 1;
        Ok(state)
    }

    /// The flag `key`, if it exists.
    pub async fn flag(&mut self, key: &str) -> Result<Option<FlagRecord>> {
        Ok(items::get(&mut self.tx, &FLAGS, key)
            .await?
            .map(items::Item::into_flag))
    }

    /// The segment `name`, if it exists.
    pub async fn segment(&mut self, name: &str) -> Result<Option<SegmentRecord>> {
        Ok(items::get(&mut self.tx, &SEGMENTS, name)
            .await?
            .map(items::Item::into_segment))
    }

    /// The token `id`, revoked or not.
    pub async fn token(&mut self, id: &str) -> Result<Option<TokenRecord>> {
        fetch_token(&mut self.tx, id).await
    }

    /// How many tokens are not revoked, of `role` if given.
    pub async fn count_active_tokens(&mut self, role: Option<Role>) -> Result<i64> {
        let row =
            match role {
                Some(role) => sqlx::query(
                    "SELECT COUNT(*) AS n FROM tokens WHERE revoked_at_ms IS NULL AND role = $1",
                )
                .bind(role.as_str())
                .fetch_one(&mut *self.tx)
                .await?,
                None => {
                    sqlx::query("SELECT COUNT(*) AS n FROM tokens WHERE revoked_at_ms IS NULL")
                        .fetch_one(&mut *self.tx)
                        .await?
                }
            };
        Ok(sqlx::Row::try_get(&row, "n")?)
    }

    /// Every environment, by name.
    pub async fn environments(&mut self) -> Result<Vec<EnvironmentRecord>> {
        crate::store::fetch_environments(&mut self.tx).await
    }

    /// The metadata value under `key`.
    pub async fn meta(&mut self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(row
            .map(|row| sqlx::Row::try_get(&row, "value"))
            .transpose()?)
    }

    async fn feed(
        &mut self,
        kind: FeedKind,
        key: &str,
        environment: Option<&str>,
        op: FeedOp,
    ) -> Result<()> {
        self.seq += 1;
        self.wrote = true;
        self.ruleset_changed |= kind.is_ruleset();
        let entry = feed::NewEntry {
            revision: self.revision,
            seq: self.seq,
            kind,
            key,
            environment,
            op,
            at_ms: self.now,
        };
        feed::append(&mut self.tx, &entry).await
    }

    /// Creates, updates or deletes one flag as `write` says, after checking `write.expect`
    /// (a failed expectation is an error and the caller must not commit). Returns the stored
    /// flag, or `None` after a delete.
    pub async fn write_flag(&mut self, write: &Write) -> Result<Option<FlagRecord>> {
        let item = items::write(&mut self.tx, &FLAGS, write, self.now).await?;
        let op = if item.is_some() {
            FeedOp::Put
        } else {
            FeedOp::Delete
        };
        self.feed(
            FeedKind::Flag,
            &write.key,
            write.audit.environment.as_deref(),
            op,
        )
        .await?;
        Ok(item.map(items::Item::into_flag))
    }

    /// Like [`WriteTx::write_flag`], for a segment (`write.archived` is ignored).
    pub async fn write_segment(&mut self, write: &Write) -> Result<Option<SegmentRecord>> {
        let item = items::write(&mut self.tx, &SEGMENTS, write, self.now).await?;
        let op = if item.is_some() {
            FeedOp::Put
        } else {
            FeedOp::Delete
        };
        self.feed(FeedKind::Segment, &write.key, None, op).await?;
        Ok(item.map(items::Item::into_segment))
    }

    /// The record `id` of `kind`, if it exists.
    pub async fn item(&mut self, kind: ItemKind, id: &str) -> Result<Option<ItemRecord>> {
        Ok(items::get(&mut self.tx, kind.table(), id)
            .await?
            .map(items::Item::into_record))
    }

    /// Every record of `kind`, by id (a few hundred at most: callers filter).
    pub async fn items(&mut self, kind: ItemKind) -> Result<Vec<ItemRecord>> {
        Ok(items::list_on(&mut self.tx, kind.table())
            .await?
            .into_iter()
            .map(items::Item::into_record)
            .collect())
    }

    /// Like [`WriteTx::write_flag`], for a record of `kind` (`write.archived` is ignored).
    /// Audited; not in the change feed (what it serves changes through its flag).
    pub async fn write_item(
        &mut self,
        kind: ItemKind,
        write: &Write,
    ) -> Result<Option<ItemRecord>> {
        let item = items::write(&mut self.tx, kind.table(), write, self.now).await?;
        self.wrote = true;
        Ok(item.map(items::Item::into_record))
    }

    /// Queues `payload` for delivery to `webhook` (the outbox): committed with the change it
    /// reports, or not at all.
    pub async fn enqueue_delivery(
        &mut self,
        webhook: &str,
        event: &str,
        payload: &serde_json::Value,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO webhook_deliveries (webhook, event, payload, created_at_ms, state, next_at_ms) \
             VALUES ($1, $2, $3, $4, 'pending', $4)",
        )
        .bind(webhook)
        .bind(event)
        .bind(payload.to_string())
        .bind(self.now)
        .execute(&mut *self.tx)
        .await?;
        self.wrote = true;
        Ok(())
    }

    /// Creates an environment; [`StoreError::Conflict`] if the name is taken.
    pub async fn create_environment(
        &mut self,
        name: &str,
        audit: &AuditInfo,
    ) -> Result<EnvironmentRecord> {
        let existing = sqlx::query("SELECT name FROM environments WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *self.tx)
            .await?;
        if existing.is_some() {
            return Err(StoreError::Conflict {
                subject: subject("environment", name),
                expected: None,
                actual: None,
            });
        }
        sqlx::query("INSERT INTO environments (name, created_at_ms) VALUES ($1, $2)")
            .bind(name)
            .bind(self.now)
            .execute(&mut *self.tx)
            .await?;
        let after = json!({ "name": name });
        audit::append(
            &mut self.tx,
            self.now,
            Change {
                subject_kind: "environment",
                subject: name,
                info: audit,
                before: None,
                after: Some(&after),
            },
        )
        .await?;
        self.feed(FeedKind::Environment, name, Some(name), FeedOp::Put)
            .await?;
        Ok(EnvironmentRecord {
            name: name.to_owned(),
            created_at_ms: self.now,
            require_approval: false,
        })
    }

    /// Sets whether a person's flag change in environment `name` waits for approval; audited
    /// and in the feed (every replica applies the policy). [`StoreError::NotFound`] if there
    /// is no such environment.
    pub async fn set_environment_policy(
        &mut self,
        name: &str,
        require_approval: bool,
        audit: &AuditInfo,
    ) -> Result<EnvironmentRecord> {
        let row = sqlx::query(
            "SELECT name, created_at_ms, require_approval FROM environments WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&mut *self.tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound {
                subject: subject("environment", name),
            });
        };
        let before = crate::store::environment_from_row(&row)?;
        sqlx::query("UPDATE environments SET require_approval = $2 WHERE name = $1")
            .bind(name)
            .bind(require_approval)
            .execute(&mut *self.tx)
            .await?;
        let json_of = |r: bool| json!({ "name": name, "requireApproval": r });
        audit::append(
            &mut self.tx,
            self.now,
            Change {
                subject_kind: "environment",
                subject: name,
                info: audit,
                before: Some(&json_of(before.require_approval)),
                after: Some(&json_of(require_approval)),
            },
        )
        .await?;
        self.feed(FeedKind::Environment, name, Some(name), FeedOp::Put)
            .await?;
        self.wrote = true;
        Ok(EnvironmentRecord {
            require_approval,
            ..before
        })
    }

    /// Stores a new token; [`StoreError::Conflict`] if its id, or the name of an active token,
    /// is taken. The audit entry records id, name, role and environment, never the secret hash.
    pub async fn create_token(
        &mut self,
        token: &NewToken,
        audit: &AuditInfo,
    ) -> Result<TokenRecord> {
        if fetch_token(&mut self.tx, &token.id).await?.is_some() {
            return Err(StoreError::Conflict {
                subject: subject("token", &token.id),
                expected: None,
                actual: None,
            });
        }
        let named = sqlx::query("SELECT id FROM tokens WHERE name = $1 AND revoked_at_ms IS NULL")
            .bind(token.name.as_str())
            .fetch_optional(&mut *self.tx)
            .await?;
        if named.is_some() {
            return Err(StoreError::Conflict {
                subject: format!("an active token named {:?}", token.name),
                expected: None,
                actual: None,
            });
        }
        sqlx::query(
            "INSERT INTO tokens (id, name, role, environment, secret_hash, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token.id.as_str())
        .bind(token.name.as_str())
        .bind(token.role.as_str())
        .bind(token.environment.as_deref())
        .bind(token.secret_hash.as_str())
        .bind(self.now)
        .execute(&mut *self.tx)
        .await?;
        let record = TokenRecord {
            id: token.id.clone(),
            name: token.name.clone(),
            role: token.role,
            environment: token.environment.clone(),
            secret_hash: token.secret_hash.clone(),
            created_at_ms: self.now,
            revoked_at_ms: None,
        };
        let after = token_audit_json(&record);
        audit::append(
            &mut self.tx,
            self.now,
            Change {
                subject_kind: "token",
                subject: &record.id,
                info: audit,
                before: None,
                after: Some(&after),
            },
        )
        .await?;
        self.feed(
            FeedKind::Token,
            &record.id,
            record.environment.as_deref(),
            FeedOp::Put,
        )
        .await?;
        Ok(record)
    }

    /// Marks the token revoked. [`StoreError::NotFound`] if there is no such token;
    /// [`StoreError::Conflict`] if it is already revoked.
    pub async fn revoke_token(&mut self, id: &str, audit: &AuditInfo) -> Result<TokenRecord> {
        let Some(before) = fetch_token(&mut self.tx, id).await? else {
            return Err(StoreError::NotFound {
                subject: subject("token", id),
            });
        };
        if before.revoked_at_ms.is_some() {
            return Err(StoreError::Conflict {
                subject: format!("revocation of {}", subject("token", id)),
                expected: None,
                actual: None,
            });
        }
        sqlx::query("UPDATE tokens SET revoked_at_ms = $2 WHERE id = $1")
            .bind(id)
            .bind(self.now)
            .execute(&mut *self.tx)
            .await?;
        let after = TokenRecord {
            revoked_at_ms: Some(self.now),
            ..before.clone()
        };
        audit::append(
            &mut self.tx,
            self.now,
            Change {
                subject_kind: "token",
                subject: id,
                info: audit,
                before: Some(&token_audit_json(&before)),
                after: Some(&token_audit_json(&after)),
            },
        )
        .await?;
        self.feed(FeedKind::Token, id, None, FeedOp::Put).await?;
        Ok(after)
    }

    /// Stores `value` under `key`, replacing any previous value (not audited, not in the feed).
    pub async fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *self.tx)
        .await?;
        self.wrote = true;
        Ok(())
    }

    /// Commits: records the ruleset revision, prunes the feed now and then, wakes every
    /// replica (PostgreSQL `NOTIFY`, delivered at commit; in-process listeners directly).
    /// With nothing written, rolls back instead, leaving the revision unchanged.
    pub async fn commit(mut self) -> Result<Committed> {
        if !self.wrote {
            self.tx.rollback().await?;
            return Ok(Committed {
                revision: self.revision - 1,
                ruleset_changed: false,
                changes: 0,
            });
        }
        if self.ruleset_changed {
            sqlx::query("UPDATE store_revision SET ruleset_revision = $1 WHERE id = 1")
                .bind(self.revision)
                .execute(&mut *self.tx)
                .await?;
        }
        if self.revision % 1000 == 0 && self.revision > FEED_RETENTION {
            let floor = self.revision - FEED_RETENTION;
            sqlx::query("DELETE FROM change_feed WHERE revision <= $1")
                .bind(floor)
                .execute(&mut *self.tx)
                .await?;
            sqlx::query("UPDATE store_revision SET feed_floor = $1 WHERE id = 1")
                .bind(floor)
                .execute(&mut *self.tx)
                .await?;
        }
        if self.store.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(self.store.channel())
                .bind(self.revision.to_string())
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        self.store.signal_local(self.revision);
        Ok(Committed {
            revision: self.revision,
            ruleset_changed: self.ruleset_changed,
            changes: self.seq,
        })
    }

    /// Rolls back (the same as dropping it, but waits for the database).
    pub async fn rollback(self) -> Result<()> {
        self.tx.rollback().await?;
        Ok(())
    }
}
