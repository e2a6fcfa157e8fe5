//! Normalised resource state, desired and live, in one shape so that diff is generic.
//!
//! Providers turn specs and API responses into [`Fields`]: only what the user owns, with the
//! provider's normalisation applied (names for access levels, defaults filled in, secrets as
//! fingerprints). A failed read is [`Observed::Unknown`], never [`Observed::Absent`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::address::Address;
use crate::secret::SecretValue;

/// One normalised field value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<Value>),
    /// A secret, by keyed fingerprint; rendered `(sensitive)`.
    Sensitive {
        sensitive: String,
    },
}

impl Value {
    pub fn str(s: impl Into<String>) -> Self {
        Self::Str(s.into())
    }

    pub fn is_sensitive(&self) -> bool {
        matches!(self, Self::Sensitive { .. })
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(n) => write!(f, "{n}"),
            Self::Str(s) => write!(f, "{s:?}"),
            Self::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Self::Sensitive { .. } => f.write_str("(sensitive)"),
        }
    }
}

/// Managed fields of one resource, by name.
pub type Fields = BTreeMap<String, Value>;

/// A resource as the desired state wants it.
#[derive(Clone, Debug)]
pub struct Desired {
    pub address: Address,
    pub fields: Fields,
    /// Fields that cannot change in place: a difference means delete and create.
    pub replace_on: &'static [&'static str],
    /// Secret values of sensitive fields, for apply only (never serialised).
    pub secrets: BTreeMap<String, SecretValue>,
}

/// A live object as read.
#[derive(Clone, Debug, PartialEq)]
pub struct Live {
    pub fields: Fields,
    /// Provider data the apply needs (numeric ids); not compared.
    pub meta: BTreeMap<String, String>,
}

impl Live {
    /// Whether this live object has every wanted field's value. A field GitLab does not show
    /// (a hidden value) cannot be compared and does not count against it; the convergence
    /// check reports what stays unknown.
    pub fn is_as_wanted(&self, want: &Fields) -> bool {
        want.iter()
            .all(|(f, v)| self.fields.get(f).is_none_or(|have| have == v))
    }

    /// Fingerprint of the live state a step is computed against: sha256 of the canonical JSON
    /// of its fields (secrets are already fingerprints).
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(&self.fields).expect("fields serialise");
        format!("sha256:{}", &hex::encode(Sha256::digest(canonical))[..16])
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Observed {
    Present(Live),
    Absent,
    /// The read failed: nothing may be concluded, nothing may change.
    Unknown(String),
}

/// Everything read from the live systems for one plan.
#[derive(Debug, Default)]
pub struct LiveState {
    /// Every desired address, observed.
    pub objects: BTreeMap<Address, Observed>,
    /// Live objects in a managed collection that the desired state does not list.
    pub unmanaged: BTreeMap<Address, Live>,
}

impl LiveState {
    /// What is live at `address` now, desired or not: the object, `None` when absent, or why it
    /// could not be read.
    pub fn current(&self, address: &Address) -> Result<Option<&Live>, &str> {
        match self.objects.get(address) {
            Some(Observed::Present(l)) => Ok(Some(l)),
            Some(Observed::Absent) => Ok(None),
            Some(Observed::Unknown(why)) => Err(why),
            None => Ok(self.unmanaged.get(address)),
        }
    }
}
