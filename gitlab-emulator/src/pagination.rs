//! The one pagination implementation shared by every list endpoint: offset
//! pagination with GitLab's `x-*` headers and `Link`, the 10,000-record count
//! limit, the 50,000 offset cap for keyset-capable types, and keyset
//! pagination (`pagination=keyset`) that returns only `Link: rel="next"`.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};

use crate::error::{ApiError, ApiResult};
use crate::params::Params;

/// Default `per_page`.
pub(crate) const DEFAULT_PER_PAGE: u64 = 20;
/// Largest `per_page` (larger values are clamped, as Kaminari does).
pub(crate) const MAX_PER_PAGE: u64 = 100;
/// Above this many records, totals and `rel="last"` are omitted.
pub(crate) const COUNT_LIMIT: usize = 10_000;
/// Largest offset allowed for keyset-capable types.
pub(crate) const MAX_OFFSET: u64 = 50_000;

/// What a list endpoint supports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListKind {
    /// Type name used in the 405 offset-cap message (`Project`, `User`);
    /// `None` for types without the cap and without keyset pagination.
    pub keyset_type: Option<&'static str>,
    /// Orderings besides `id`/`created_at` that keyset pagination accepts,
    /// with an opaque `cursor` (`Gitlab::Pagination::CursorBasedKeyset`,
    /// the model's `supported_keyset_orderings`).
    pub cursor_orders: &'static [&'static str],
}

impl ListKind {
    pub const PLAIN: ListKind = ListKind {
        keyset_type: None,
        cursor_orders: &[],
    };
    /// `Gitlab::Pagination::Keyset.available?`: projects only by id.
    pub const PROJECTS: ListKind = ListKind {
        keyset_type: Some("Project"),
        cursor_orders: &[],
    };
    /// `User.supported_keyset_orderings`: id, name, username, created_at,
    /// updated_at, both directions.
    pub const USERS: ListKind = ListKind {
        keyset_type: Some("User"),
        cursor_orders: &["name", "username", "updated_at"],
    };
}

/// Parsed pagination request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageRequest {
    pub page: u64,
    pub per_page: u64,
    /// `Some(descending)` for keyset pagination.
    pub keyset_desc: Option<bool>,
    /// Keyset pagination over an ordering other than id: the next page is
    /// reached with an opaque `cursor` (see [`paginate_cursor`]).
    pub cursor: bool,
}

/// Order requested by `sort` (GitLab's lists default to `desc` for projects and users).
pub(crate) fn sort_desc(params: &Params, default_desc: bool) -> ApiResult<bool> {
    Ok(match params.one_of("sort", &["asc", "desc"])? {
        Some(s) => s == "desc",
        None => default_desc,
    })
}

/// Reads `page`, `per_page`, `pagination`, `order_by`, `sort` and applies the
/// offset cap (405) and keyset availability rules for `kind`.
pub(crate) fn parse(params: &Params, kind: ListKind, default_desc: bool) -> ApiResult<PageRequest> {
    let page = params.int("page")?.filter(|p| *p > 0).unwrap_or(1) as u64;
    let per_page = match params.int("per_page")? {
        Some(n) if n > 0 => (n as u64).min(MAX_PER_PAGE),
        _ => DEFAULT_PER_PAGE,
    };
    let keyset = params.str("pagination").as_deref() == Some("keyset");
    if keyset {
        let Some(_) = kind.keyset_type else {
            return Err(keyset_unavailable());
        };
        let order_by = params.str("order_by").unwrap_or_else(|| "id".into());
        let cursor = kind.cursor_orders.contains(&order_by.as_str());
        if order_by != "id" && order_by != "created_at" && !cursor {
            return Err(keyset_unavailable());
        }
        return Ok(PageRequest {
            page: 1,
            per_page,
            keyset_desc: Some(sort_desc(params, default_desc)?),
            cursor,
        });
    }
    if let Some(type_name) = kind.keyset_type {
        let offset = (page - 1).saturating_mul(per_page);
        if offset > MAX_OFFSET {
            return Err(ApiError::error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "Offset pagination has a maximum allowed offset of {MAX_OFFSET} for requests that return objects of type {type_name}. Remaining records can be retrieved using keyset pagination."
                ),
            ));
        }
    }
    Ok(PageRequest {
        page,
        per_page,
        keyset_desc: None,
        cursor: false,
    })
}

/// The `(value, id)` position a `cursor` parameter points after: URL-safe
/// Base64 of `{"<order_by>": value, "id": "<id>"}`, as GitLab's keyset
/// paginator encodes it. 400 `{"error":"cursor is invalid"}` otherwise.
pub(crate) fn decode_cursor(params: &Params, order_by: &str) -> ApiResult<Option<(String, u64)>> {
    use base64ct::Encoding;
    let Some(raw) = params.str("cursor").filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let invalid = || ApiError::bad_param("cursor is invalid");
    let bytes = base64ct::Base64Url::decode_vec(&raw)
        .or_else(|_| base64ct::Base64UrlUnpadded::decode_vec(&raw))
        .map_err(|_| invalid())?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let value = v
        .get(order_by)
        .and_then(|x| x.as_str())
        .ok_or_else(invalid)?;
    let id = v
        .get("id")
        .and_then(|x| x.as_str().and_then(|s| s.parse().ok()).or(x.as_u64()))
        .ok_or_else(invalid)?;
    Ok(Some((value.to_string(), id)))
}

/// Keyset pagination with a cursor: `items` must already be ordered and
/// start after the request's cursor. Only `Link: <…cursor=…>; rel="next"`
/// while more remain (`Gitlab::Pagination::Keyset::HeaderBuilder`).
pub(crate) fn paginate_cursor<T>(
    request: PageRequest,
    base_url: &str,
    uri: &Uri,
    order_by: &str,
    items: impl Iterator<Item = T>,
    position_of: impl Fn(&T) -> (String, u64),
) -> Page<T> {
    use base64ct::Encoding;
    let mut page: Vec<T> = items.take(request.per_page as usize + 1).collect();
    let mut headers = HeaderMap::new();
    if page.len() > request.per_page as usize {
        page.truncate(request.per_page as usize);
        if let Some(last) = page.last() {
            let (value, id) = position_of(last);
            let mut cursor = serde_json::Map::new();
            cursor.insert(order_by.to_string(), serde_json::Value::String(value));
            cursor.insert("id".into(), serde_json::Value::String(id.to_string()));
            let encoded = base64ct::Base64Url::encode_string(
                serde_json::Value::Object(cursor).to_string().as_bytes(),
            );
            let mut q = query_pairs(uri);
            q.remove("page");
            q.insert("cursor".into(), encoded);
            q.insert("per_page".into(), request.per_page.to_string());
            let link_base = format!("{base_url}{}", uri.path());
            let link = format!("<{}>; rel=\"next\"", build_url(&link_base, &q));
            insert(&mut headers, "link", &link);
        }
    }
    Page {
        items: page,
        headers,
    }
}

fn keyset_unavailable() -> ApiError {
    ApiError::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "Keyset pagination is not yet available for this type of request",
    )
}

/// One page of results plus the headers GitLab sends with it.
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    pub headers: HeaderMap,
}

/// Paginates `items` (already filtered and ordered; `total` is their count).
/// For keyset requests the caller must already have applied `id_after` /
/// `id_before` and ordered by id in the requested direction; `id_of` gives the
/// cursor of an item.
pub(crate) fn paginate<T>(
    request: PageRequest,
    base_url: &str,
    uri: &Uri,
    items: impl Iterator<Item = T>,
    total: usize,
    id_of: impl Fn(&T) -> u64,
) -> Page<T> {
    let query = query_pairs(uri);
    let link_base = format!("{base_url}{}", uri.path());
    if let Some(desc) = request.keyset_desc {
        let mut page: Vec<T> = items.take(request.per_page as usize + 1).collect();
        let mut headers = HeaderMap::new();
        if page.len() > request.per_page as usize {
            page.truncate(request.per_page as usize);
            if let Some(last) = page.last() {
                let mut q = query.clone();
                q.remove("id_after");
                q.remove("id_before");
                q.remove("page");
                let cursor_key = if desc { "id_before" } else { "id_after" };
                q.insert(cursor_key.into(), id_of(last).to_string());
                q.insert("per_page".into(), request.per_page.to_string());
                let link = format!("<{}>; rel=\"next\"", build_url(&link_base, &q));
                insert(&mut headers, "link", &link);
            }
        }
        return Page {
            items: page,
            headers,
        };
    }

    let offset = ((request.page - 1) * request.per_page) as usize;
    let per_page = request.per_page as usize;
    let mut page: Vec<T> = items.skip(offset).take(per_page).collect();
    let has_next = offset + page.len() < total;
    page.shrink_to_fit();
    let countable = total <= COUNT_LIMIT;
    let total_pages = total.div_ceil(per_page).max(1) as u64;

    let mut headers = HeaderMap::new();
    insert(&mut headers, "x-page", &request.page.to_string());
    insert(&mut headers, "x-per-page", &request.per_page.to_string());
    let next = if has_next {
        (request.page + 1).to_string()
    } else {
        String::new()
    };
    insert(&mut headers, "x-next-page", &next);
    let prev = if request.page > 1 {
        (request.page - 1).to_string()
    } else {
        String::new()
    };
    insert(&mut headers, "x-prev-page", &prev);
    if countable {
        insert(&mut headers, "x-total", &total.to_string());
        insert(&mut headers, "x-total-pages", &total_pages.to_string());
    }

    let link_for = |page_no: u64| {
        let mut q = query.clone();
        q.insert("page".into(), page_no.to_string());
        q.insert("per_page".into(), request.per_page.to_string());
        build_url(&link_base, &q)
    };
    let mut links = Vec::new();
    if request.page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", link_for(request.page - 1)));
    }
    if has_next {
        links.push(format!("<{}>; rel=\"next\"", link_for(request.page + 1)));
    }
    links.push(format!("<{}>; rel=\"first\"", link_for(1)));
    if countable {
        links.push(format!("<{}>; rel=\"last\"", link_for(total_pages)));
    }
    insert(&mut headers, "link", &links.join(", "));
    Page {
        items: page,
        headers,
    }
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// Query parameters of the request, sorted by name as Rails' `to_query` does,
/// without the token.
fn query_pairs(uri: &Uri) -> BTreeMap<String, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    pairs
        .into_iter()
        .filter(|(k, _)| k != "private_token")
        .collect()
}

fn build_url(base: &str, query: &BTreeMap<String, String>) -> String {
    let encoded = serde_urlencoded::to_string(query).unwrap_or_default();
    if encoded.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{encoded}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn last_page_has_empty_next_and_no_next_link() {
        let req = PageRequest {
            page: 3,
            per_page: 10,
            keyset_desc: None,
            cursor: false,
        };
        let page = paginate(
            req,
            "http://h",
            &uri("/api/v4/x?page=3"),
            0..25u64,
            25,
            |i| *i,
        );
        assert_eq!(page.items, (20..25).collect::<Vec<_>>());
        assert_eq!(page.headers["x-next-page"], "");
        assert_eq!(page.headers["x-prev-page"], "2");
        assert_eq!(page.headers["x-total-pages"], "3");
        let link = page.headers["link"].to_str().unwrap();
        assert!(!link.contains("rel=\"next\""));
        assert!(link.contains("<http://h/api/v4/x?page=2&per_page=10>; rel=\"prev\""));
    }

    #[test]
    fn totals_omitted_above_count_limit() {
        let req = PageRequest {
            page: 1,
            per_page: 100,
            keyset_desc: None,
            cursor: false,
        };
        let page = paginate(req, "http://h", &uri("/x"), 0..10_001u64, 10_001, |i| *i);
        assert!(page.headers.get("x-total").is_none());
        assert!(page.headers.get("x-total-pages").is_none());
        assert!(
            !page.headers["link"]
                .to_str()
                .unwrap()
                .contains("rel=\"last\"")
        );
        assert_eq!(page.headers["x-next-page"], "2");
    }

    #[test]
    fn keyset_links_only_next() {
        let req = PageRequest {
            page: 1,
            per_page: 2,
            keyset_desc: Some(false),
            cursor: false,
        };
        let page = paginate(
            req,
            "http://h",
            &uri("/x?pagination=keyset"),
            1..=3u64,
            3,
            |i| *i,
        );
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(
            page.headers["link"],
            "<http://h/x?id_after=2&pagination=keyset&per_page=2>; rel=\"next\""
        );
        assert!(page.headers.get("x-total").is_none());
        let end = paginate(req, "http://h", &uri("/x"), 3..=3u64, 1, |i| *i);
        assert!(end.headers.get("link").is_none());
    }
}
