//! Request parameters as Grape sees them: the query string merged with a JSON
//! or form-encoded body, with Grape's coercions (booleans as `"true"`/`"false"`,
//! integers as strings) and Grape's error bodies for missing or invalid values.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// Largest request body accepted (GitLab's own limit is far larger; variables are small).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Merged request parameters (body values override query values, as in Grape).
#[derive(Debug, Clone, Default)]
pub(crate) struct Params {
    map: Map<String, Value>,
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let query = req.uri().query().unwrap_or("").to_string();
        // The multipart boundary is case-sensitive; only the media type is not.
        let raw_content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let content_type = raw_content_type.to_ascii_lowercase();
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::bad_param("request body could not be read"))?;
        if body.len() > MAX_BODY {
            return Err(ApiError::message(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "413 Request Entity Too Large",
            ));
        }
        let mut params = Params::default();
        params.merge_form(query.as_bytes());
        if !body.is_empty() {
            if content_type.starts_with("application/json") {
                let value: Value = serde_json::from_slice(&body).map_err(|_| {
                    ApiError::bad_param("message body does not match declared format")
                })?;
                if let Value::Object(obj) = value {
                    params.map.extend(obj);
                }
            } else if content_type.starts_with("multipart/form-data") {
                params.merge_multipart(&raw_content_type, &body)?;
            } else {
                params.merge_form(&body);
            }
        }
        Ok(params)
    }
}

impl Params {
    /// Builds parameters from a list of pairs (tests and internal callers).
    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let mut p = Params::default();
        for (k, v) in pairs {
            p.map.insert(k.to_string(), Value::String(v.to_string()));
        }
        p
    }

    fn merge_form(&mut self, raw: &[u8]) {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(raw).unwrap_or_default();
        for (k, v) in pairs {
            if let Some(base) = k.strip_suffix("[]") {
                let entry = self
                    .map
                    .entry(base.to_string())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = entry {
                    list.push(Value::String(v));
                }
            } else {
                self.map.insert(k, Value::String(v));
            }
        }
    }

    /// `multipart/form-data` (RFC 7578), as Rack parses it for Grape: each
    /// text part is a parameter (`key[]` parts make a list); a file part
    /// becomes `{"filename": …, "type": …}` (its content is not kept).
    fn merge_multipart(&mut self, content_type: &str, body: &[u8]) -> ApiResult<()> {
        let malformed = || ApiError::bad_param("request body could not be read");
        let boundary = content_type
            .split(';')
            .filter_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                k.eq_ignore_ascii_case("boundary").then_some(v)
            })
            .next()
            .map(|b| b.trim_matches('"').to_string())
            .filter(|b| !b.is_empty())
            .ok_or_else(malformed)?;
        let delimiter = format!("--{boundary}");
        let delimiter = delimiter.as_bytes();
        let find = |hay: &[u8], needle: &[u8], from: usize| -> Option<usize> {
            hay.get(from..)?
                .windows(needle.len())
                .position(|w| w == needle)
                .map(|p| p + from)
        };
        let mut pos = find(body, delimiter, 0).ok_or_else(malformed)? + delimiter.len();
        loop {
            if body.get(pos..pos + 2) == Some(b"--") {
                return Ok(());
            }
            // Skip the CRLF after the delimiter, then read the part's headers.
            pos = find(body, b"\r\n", pos).ok_or_else(malformed)? + 2;
            let headers_end = find(body, b"\r\n\r\n", pos).ok_or_else(malformed)?;
            let headers = String::from_utf8_lossy(&body[pos..headers_end]).to_string();
            let content_start = headers_end + 4;
            let next = find(body, delimiter, content_start).ok_or_else(malformed)?;
            let content_end = next
                .checked_sub(2)
                .filter(|e| *e >= content_start)
                .ok_or_else(malformed)?;
            let content = &body[content_start..content_end];
            let mut name = None;
            let mut filename = None;
            let mut part_type = None;
            for line in headers.split("\r\n") {
                let Some((h, v)) = line.split_once(':') else {
                    continue;
                };
                if h.trim().eq_ignore_ascii_case("content-disposition") {
                    for attr in v.split(';').map(str::trim) {
                        if let Some(n) = attr.strip_prefix("name=") {
                            name = Some(n.trim_matches('"').to_string());
                        } else if let Some(f) = attr.strip_prefix("filename=") {
                            filename = Some(f.trim_matches('"').to_string());
                        }
                    }
                } else if h.trim().eq_ignore_ascii_case("content-type") {
                    part_type = Some(v.trim().to_string());
                }
            }
            if let Some(name) = name {
                let value = match filename {
                    Some(f) => serde_json::json!({"filename": f, "type": part_type}),
                    None => Value::String(String::from_utf8_lossy(content).into_owned()),
                };
                if let Some(base) = name.strip_suffix("[]") {
                    let entry = self
                        .map
                        .entry(base.to_string())
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(list) = entry {
                        list.push(value);
                    }
                } else {
                    self.map.insert(name, value);
                }
            }
            pos = next + delimiter.len();
        }
    }

    /// Raw value of `key`; `a[b]` also finds `{"a": {"b": ...}}`. JSON null counts as absent.
    pub fn raw(&self, key: &str) -> Option<&Value> {
        let found = self.map.get(key).or_else(|| {
            let (outer, rest) = key.split_once('[')?;
            let inner = rest.strip_suffix(']')?;
            self.map.get(outer)?.as_object()?.get(inner)
        });
        found.filter(|v| !v.is_null())
    }

    /// Whether `key` was sent at all (even as an empty string).
    pub fn has(&self, key: &str) -> bool {
        self.raw(key).is_some()
    }

    /// String value of `key` (numbers and booleans are rendered as text).
    pub fn str(&self, key: &str) -> Option<String> {
        match self.raw(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// Required string: Grape's `{"error":"<key> is missing"}` when absent.
    pub fn required_str(&self, key: &str) -> ApiResult<String> {
        self.str(key)
            .ok_or_else(|| ApiError::bad_param(format!("{key} is missing")))
    }

    /// Boolean with Grape's coercion; `{"error":"<key> is invalid"}` otherwise.
    pub fn bool(&self, key: &str) -> ApiResult<Option<bool>> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "t" | "yes" | "y" | "on" => Ok(Some(true)),
                "false" | "0" | "f" | "no" | "n" | "off" | "" => Ok(Some(false)),
                _ => Err(invalid(key)),
            },
            Some(Value::Number(n)) => match n.as_i64() {
                Some(1) => Ok(Some(true)),
                Some(0) => Ok(Some(false)),
                _ => Err(invalid(key)),
            },
            Some(_) => Err(invalid(key)),
        }
    }

    /// Integer with Grape's coercion; `{"error":"<key> is invalid"}` otherwise.
    pub fn int(&self, key: &str) -> ApiResult<Option<i64>> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| invalid(key)),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| invalid(key)),
            Some(_) => Err(invalid(key)),
        }
    }

    /// A list value: a JSON array, `key[]=` form values, or a comma-separated string.
    pub fn list(&self, key: &str) -> Vec<Value> {
        match self.raw(key) {
            Some(Value::Array(items)) => items.clone(),
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
            Some(other) => vec![other.clone()],
            None => Vec::new(),
        }
    }

    /// The string value of `key` when it is one of `allowed`; Grape's
    /// `{"error":"<key> does not have a valid value"}` otherwise.
    pub fn one_of(&self, key: &str, allowed: &[&str]) -> ApiResult<Option<String>> {
        match self.str(key) {
            None => Ok(None),
            Some(v) if allowed.contains(&v.as_str()) => Ok(Some(v)),
            Some(_) => Err(ApiError::bad_param(format!(
                "{key} does not have a valid value"
            ))),
        }
    }
}

fn invalid(key: &str) -> ApiError {
    ApiError::bad_param(format!("{key} is invalid"))
}

/// Grape's error for several missing required parameters:
/// `{"error":"a is missing, b is missing"}`; `Ok` when none is missing.
pub(crate) fn require_all(params: &Params, keys: &[&str]) -> ApiResult<()> {
    let missing: Vec<String> = keys
        .iter()
        .filter(|k| params.str(k).is_none())
        .map(|k| format!("{k} is missing"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_param(missing.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_accept_strings() {
        let p = Params::from_pairs(&[("a", "true"), ("b", "false"), ("c", "maybe")]);
        assert_eq!(p.bool("a").unwrap(), Some(true));
        assert_eq!(p.bool("b").unwrap(), Some(false));
        assert_eq!(p.bool("z").unwrap(), None);
        assert_eq!(
            p.bool("c").unwrap_err().body,
            serde_json::json!({"error": "c is invalid"})
        );
    }

    #[test]
    fn nested_filter_lookup() {
        let mut p = Params::default();
        p.map.insert(
            "filter".into(),
            serde_json::json!({"environment_scope": "prod"}),
        );
        assert_eq!(p.str("filter[environment_scope]").as_deref(), Some("prod"));
        let q = Params::from_pairs(&[("filter[environment_scope]", "dev")]);
        assert_eq!(q.str("filter[environment_scope]").as_deref(), Some("dev"));
    }

    #[test]
    fn missing_params_are_joined() {
        let p = Params::from_pairs(&[("name", "x")]);
        let err = require_all(&p, &["name", "username", "email"]).unwrap_err();
        assert_eq!(
            err.body,
            serde_json::json!({"error": "username is missing, email is missing"})
        );
    }
}
