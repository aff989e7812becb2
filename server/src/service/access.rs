//! Who may see what: API keys, roles and the scope every query is confined to.
//!
//! A key is `dt_<id>_<secret>`. The server keeps only the argon2id hash of the secret; a key
//! is shown once, when an admin creates it. Roles: `admin` sees everything; `store` sees the
//! vehicles its store sells or services and their customers; `fleet` sees its own vehicles and
//! their drivers. A verified key is remembered (by a SHA-256 of the key) so argon2's deliberate
//! slowness is paid once per key, while revocation is checked on every request.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use sha2::{Digest, Sha256};

use crate::store::{Statement, Store, StoreError, Value};

/// What a key may do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, including imports, dead letters and every tenant.
    Admin,
    /// One store's vehicles and customers.
    Store(i64),
    /// One fleet's vehicles and drivers.
    Fleet(String),
}

impl Role {
    /// `admin`, `store:<id>` or `fleet:<id>`.
    pub fn parse(text: &str) -> Result<Role, String> {
        match text.split_once(':') {
            None if text == "admin" => Ok(Role::Admin),
            Some(("store", id)) => id
                .parse()
                .map(Role::Store)
                .map_err(|_| format!("store id {id:?} is not a number")),
            Some(("fleet", id)) if !id.is_empty() => Ok(Role::Fleet(id.to_owned())),
            _ => Err(format!(
                "role {text:?} is not admin, store:<id> or fleet:<id>"
            )),
        }
    }

    fn stored(&self) -> (&'static str, Option<String>) {
        match self {
            Role::Admin => ("admin", None),
            Role::Store(id) => ("store", Some(id.to_string())),
            Role::Fleet(id) => ("fleet", Some(id.clone())),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Admin => f.write_str("admin"),
            Role::Store(id) => write!(f, "store:{id}"),
            Role::Fleet(id) => write!(f, "fleet:{id}"),
        }
    }
}

/// An authenticated caller. Store queries take it, so none can forget the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    /// The key's public id.
    pub key_id: String,
    /// Its role.
    pub role: Role,
}

impl Caller {
    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// A condition on a vehicle row aliased `v` confining it to the caller's tenant, with its
    /// parameter numbered `$n`.
    pub fn vehicle_scope(&self, n: usize) -> (String, Vec<Value>) {
        match &self.role {
            Role::Admin => ("1 = 1".into(), vec![]),
            Role::Store(id) => (format!("v.store_id = ${n}"), vec![(*id).into()]),
            Role::Fleet(id) => (format!("v.fleet_id = ${n}"), vec![id.clone().into()]),
        }
    }

    /// A condition on a customer row aliased `c`: a store sees its customers and those of its
    /// vehicles; a fleet its drivers.
    pub fn customer_scope(&self, n: usize) -> (String, Vec<Value>) {
        match &self.role {
            Role::Admin => ("1 = 1".into(), vec![]),
            Role::Store(id) => (
                format!(
                    "(c.home_store_id = ${n} OR c.id IN (SELECT customer_id FROM vehicles WHERE store_id = ${n}))"
                ),
                vec![(*id).into()],
            ),
            Role::Fleet(id) => (
                format!(
                    "(c.fleet_id = ${n} OR c.id IN (SELECT customer_id FROM vehicles WHERE fleet_id = ${n}))"
                ),
                vec![id.clone().into()],
            ),
        }
    }
}

/// Why a key is refused.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// No such key, a wrong secret, or a revoked key: the caller is told nothing more.
    #[error("the API key is not valid")]
    Invalid,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A key as an admin sees it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Public id.
    pub id: String,
    /// Role.
    pub role: String,
    /// A name for people.
    pub name: String,
    /// Created, UTC seconds.
    pub created_s: i64,
    /// Revoked, UTC seconds.
    pub revoked_s: Option<i64>,
}

fn random_text(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).expect("the operating system provides random bytes");
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_s() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Verifies keys, remembering the ones it verified.
#[derive(Debug, Default)]
pub struct Keys {
    verified: Mutex<HashMap<String, [u8; 32]>>,
}

impl Keys {
    /// Creates a key; returns the whole key, to be shown once.
    pub async fn create(store: &Store, role: &Role, name: &str) -> Result<String, StoreError> {
        let id = random_text(6);
        let secret = random_text(24);
        let hash = Argon2::default()
            .hash_password(secret.as_bytes())
            .map_err(|error| StoreError::Data(format!("hashing a key: {error}")))?
            .to_string();
        let (role_name, scope) = role.stored();
        store
            .execute(vec![Statement::new(
                "INSERT INTO api_keys (id, hash, role, scope_id, name, created_s) VALUES ($1, $2, $3, $4, $5, $6)",
                vec![id.clone().into(), hash.into(), role_name.into(), scope.into(), name.into(), now_s().into()],
            )])
            .await?;
        Ok(format!("dt_{id}_{secret}"))
    }

    /// Revokes a key by id; returns whether it existed and was active.
    pub async fn revoke(store: &Store, id: &str) -> Result<bool, StoreError> {
        let changed = store
            .execute(vec![Statement::new(
                "UPDATE api_keys SET revoked_s = $1 WHERE id = $2 AND revoked_s IS NULL",
                vec![now_s().into(), id.into()],
            )])
            .await?;
        Ok(changed.first().copied().unwrap_or(0) > 0)
    }

    /// Every key.
    pub async fn list(store: &Store) -> Result<Vec<KeyInfo>, StoreError> {
        Ok(store
            .query("SELECT id, role, scope_id, name, created_s, revoked_s FROM api_keys ORDER BY created_s, id", vec![])
            .await?
            .into_iter()
            .map(|row| KeyInfo {
                id: row[0].text().unwrap_or_default().to_owned(),
                role: match row[2].text() {
                    Some(scope) => format!("{}:{scope}", row[1].text().unwrap_or_default()),
                    None => row[1].text().unwrap_or_default().to_owned(),
                },
                name: row[3].text().unwrap_or_default().to_owned(),
                created_s: row[4].int().unwrap_or(0),
                revoked_s: row[5].int(),
            })
            .collect())
    }

    /// The caller a presented key stands for.
    pub async fn verify(&self, store: &Store, presented: &str) -> Result<Caller, AccessError> {
        let (id, secret) = presented
            .strip_prefix("dt_")
            .and_then(|rest| rest.split_once('_'))
            .ok_or(AccessError::Invalid)?;
        let rows = store
            .query(
                "SELECT hash, role, scope_id FROM api_keys WHERE id = $1 AND revoked_s IS NULL",
                vec![id.into()],
            )
            .await?;
        let row = rows.first().ok_or(AccessError::Invalid)?;
        let fingerprint: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let known = self
            .verified
            .lock()
            .map(|verified| verified.get(id) == Some(&fingerprint))
            .unwrap_or(false);
        if !known {
            let hash = row[0].text().unwrap_or_default();
            let parsed = PasswordHash::new(hash).map_err(|_| AccessError::Invalid)?;
            Argon2::default()
                .verify_password(secret.as_bytes(), &parsed)
                .map_err(|_| AccessError::Invalid)?;
            if let Ok(mut verified) = self.verified.lock() {
                verified.insert(id.to_owned(), fingerprint);
            }
        }
        let role = match (row[1].text().unwrap_or_default(), row[2].text()) {
            ("admin", _) => Role::Admin,
            ("store", Some(scope)) => Role::Store(scope.parse().map_err(|_| AccessError::Invalid)?),
            ("fleet", Some(scope)) => Role::Fleet(scope.to_owned()),
            _ => return Err(AccessError::Invalid),
        };
        Ok(Caller {
            key_id: id.to_owned(),
            role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse() {
        assert_eq!(Role::parse("admin"), Ok(Role::Admin));
        assert_eq!(Role::parse("store:7"), Ok(Role::Store(7)));
        assert_eq!(Role::parse("fleet:taxi"), Ok(Role::Fleet("taxi".into())));
        assert!(Role::parse("store:x").is_err());
        assert!(Role::parse("root").is_err());
        assert!(Role::parse("fleet:").is_err());
        assert_eq!(Role::Store(7).to_string(), "store:7");
    }

    #[test]
    fn scopes_confine_by_tenant() {
        let fleet = Caller {
            key_id: "k".into(),
            role: Role::Fleet("f1".into()),
        };
        assert_eq!(
            fleet.vehicle_scope(2),
            ("v.fleet_id = $2".to_owned(), vec![Value::Text("f1".into())])
        );
        let admin = Caller {
            key_id: "k".into(),
            role: Role::Admin,
        };
        assert_eq!(admin.customer_scope(1).0, "1 = 1");
    }
}
