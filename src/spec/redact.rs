//! What of a source file a diagnostic may show.
//!
//! Owns: finding the values of sensitive keys in a file's text, and the text shown in place of
//! the file (those values replaced by `***`, very long lines shortened, control characters
//! escaped) with the mapping of
//! byte offsets between the two. A value is sensitive when its key looks like a credential
//! (`token`, `password`, `*_secret`, `private_key`, ...), when it is the `value` of a masked or
//! hidden variable (or of a variable whose key looks secret), or when it holds a private key.
//!
//! When the file parses, the tree says which keys hold what; when it does not (a syntax error,
//! a bound exceeded), every line is scanned for `key: value` pairs of sensitive keys (and every
//! `value:`), and when the end of a value is not sure, the rest of the line goes.
//!
//! Must never: leave a sensitive value in the shown text, or change line numbers.

use std::ops::Range;

use super::diagnostic::{escaped, unprintable};
use super::parse::{self, Node, NodeKind, ParseIssue};
use super::source::SourceFile;

/// What replaces a sensitive value.
pub const MASK: &str = "***";
/// Lines longer than this (in characters) are shortened around the places diagnostics point at.
const LONG_LINE: usize = 200;
/// Characters kept at the start of a long line, and before and after each place pointed at.
const KEEP_HEAD: usize = 80;
const KEEP_BEFORE: usize = 40;
const KEEP_AFTER: usize = 80;
const ELLIPSIS: &str = "…";

/// Whether a key's name says that its value is a credential.
pub fn is_sensitive_key(key: &str) -> bool {
    const WORDS: &[&str] = &[
        "password",
        "passwd",
        "secret",
        "token",
        "private_key",
        "privatekey",
        "private-key",
        "api_key",
        "apikey",
        "api-key",
        "access_key",
        "accesskey",
        "credential",
    ];
    let lower = key.to_lowercase();
    WORDS.iter().any(|w| lower.contains(w))
}

/// A piece of text quoted in a message (a key, a name) with what looks like a secret masked:
/// a private key, or what follows a sensitive key (`password: x`, `token=x`). A structure
/// mistake can turn a value into a key, and messages quote keys.
pub fn mask_inline(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains("PRIVATE KEY") {
        return MASK.into();
    }
    for (sep, c) in s.char_indices().filter(|(_, c)| *c == ':' || *c == '=') {
        if let Some((key, _)) = key_before(s, sep)
            && is_sensitive_key(key)
            // References by name (`from: {secret: NAME}`) and policy names are not secrets.
            && !matches!(key, "secret" | "secrets" | "secret_variables_masked")
            && !s[sep + c.len_utf8()..].trim().is_empty()
        {
            return format!("{}{c} {MASK}", &s[..sep]).into();
        }
    }
    s.into()
}

/// One replaced range: `orig` in the file's text, `shown` in the shown text.
#[derive(Clone, Debug)]
struct Edit {
    orig: Range<usize>,
    shown: Range<usize>,
}

/// The text shown for a file, and how offsets of the file map to it.
#[derive(Debug)]
pub struct Shown {
    pub text: String,
    edits: Vec<Edit>,
    /// The masked ranges of the file (sorted, disjoint).
    secret: Vec<Range<usize>>,
}

impl Shown {
    /// The shown text of `file`: sensitive values masked, long lines shortened except around
    /// the offsets in `keep` (where diagnostics point).
    pub fn new(file: &SourceFile, keep: &[usize]) -> Self {
        let text = file.text.as_str();
        let secret = merge(sensitive_ranges(file));
        let mut edits: Vec<(Range<usize>, String)> = Vec::new();
        for r in &secret {
            // Keep the line breaks (line numbers must not change) and each line's indentation.
            let mut at = r.start;
            for piece in text[r.clone()].split_inclusive('\n') {
                let body = piece.trim_end_matches(['\n', '\r']);
                let indent = body.len() - body.trim_start().len();
                if body.len() > indent {
                    edits.push((at + indent..at + body.len(), MASK.to_string()));
                }
                at += piece.len();
            }
        }
        let mut covered = secret.clone();
        for gap in long_line_gaps(text, keep) {
            for part in subtract(gap, &secret) {
                if part.end > part.start {
                    covered.push(part.clone());
                    edits.push((part, ELLIPSIS.to_string()));
                }
            }
        }
        // Control characters and bidirectional overrides are shown escaped, never raw (they
        // could move the cursor or recolour a terminal).
        let covered = merge(covered);
        for (i, c) in text.char_indices() {
            let crlf = c == '\r' && text[i + 1..].starts_with('\n');
            if unprintable(c) && !crlf {
                let r = i..i + c.len_utf8();
                let k = covered.partition_point(|h| h.end <= r.start);
                if covered.get(k).is_none_or(|h| h.start >= r.end) {
                    edits.push((r, escaped(c)));
                }
            }
        }
        edits.sort_by_key(|(r, _)| r.start);
        let mut shown = String::with_capacity(text.len());
        let mut done = Vec::with_capacity(edits.len());
        let mut at = 0;
        for (r, with) in edits {
            if r.start < at {
                continue; // overlapping (cannot happen after merge/subtract; kept safe)
            }
            shown.push_str(&text[at..r.start]);
            let start = shown.len();
            shown.push_str(&with);
            done.push(Edit {
                orig: r.clone(),
                shown: start..shown.len(),
            });
            at = r.end;
        }
        shown.push_str(&text[at..]);
        Shown {
            text: shown,
            edits: done,
            secret,
        }
    }

    /// The masked ranges of the file that a span starting at `start` and ending at `end`
    /// points into (a message about such a span must not quote their text).
    pub fn masked_at(&self, start: usize, end: usize) -> impl Iterator<Item = Range<usize>> + '_ {
        let first = self.secret.partition_point(|r| r.end <= start);
        self.secret[first..]
            .iter()
            .take_while(move |r| r.start <= end.max(start))
            .filter(move |r| r.start < end.max(start + 1))
            .cloned()
    }

    /// Shift of offsets after the first `n` edits.
    fn delta(&self, n: usize) -> isize {
        match n {
            0 => 0,
            n => {
                let e = &self.edits[n - 1];
                e.shown.end as isize - e.orig.end as isize
            }
        }
    }

    /// Where a span starting at `offset` of the file starts in the shown text.
    pub fn start(&self, offset: usize) -> usize {
        let n = self.edits.partition_point(|e| e.orig.start <= offset);
        if n > 0 && offset < self.edits[n - 1].orig.end {
            return self.edits[n - 1].shown.start;
        }
        (offset as isize + self.delta(n)) as usize
    }

    /// Where a span ending at `offset` of the file ends in the shown text.
    pub fn end(&self, offset: usize) -> usize {
        let n = self.edits.partition_point(|e| e.orig.start < offset);
        if n > 0 && offset <= self.edits[n - 1].orig.end {
            return self.edits[n - 1].shown.end;
        }
        (offset as isize + self.delta(n)) as usize
    }

    /// The offset of the file shown at `offset` of the shown text (inside a replacement: where
    /// the replaced text starts).
    pub fn original(&self, offset: usize) -> usize {
        let n = self.edits.partition_point(|e| e.shown.start <= offset);
        if n > 0 && offset < self.edits[n - 1].shown.end {
            return self.edits[n - 1].orig.start;
        }
        (offset as isize - self.delta(n)) as usize
    }
}

/// Sorted, non-overlapping union of ranges.
fn merge(mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    ranges.retain(|r| r.end > r.start);
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// `range` minus the sorted, disjoint `holes`.
fn subtract(range: Range<usize>, holes: &[Range<usize>]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut at = range.start;
    let first = holes.partition_point(|h| h.end <= range.start);
    for h in &holes[first..] {
        if h.start >= range.end {
            break;
        }
        if h.start > at {
            out.push(at..h.start);
        }
        at = at.max(h.end);
    }
    if at < range.end {
        out.push(at..range.end);
    }
    out
}

/// The parts of long lines that are not shown: all but the head of the line and a window
/// around each kept offset.
fn long_line_gaps(text: &str, keep: &[usize]) -> Vec<Range<usize>> {
    let mut keep: Vec<usize> = keep.to_vec();
    keep.sort_unstable();
    let mut gaps = Vec::new();
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let line_end = line_start + body.len();
        if body.len() > LONG_LINE && body.chars().count() > LONG_LINE {
            // Character boundaries of the line, as byte offsets.
            let bounds: Vec<usize> = body
                .char_indices()
                .map(|(i, _)| line_start + i)
                .chain([line_end])
                .collect();
            let char_at = |offset: usize| bounds.partition_point(|&b| b < offset);
            let head = 0..KEEP_HEAD.min(bounds.len() - 1);
            let mut kept = vec![head];
            let from = keep.partition_point(|&k| k < line_start);
            for &k in keep[from..].iter().take_while(|&&k| k <= line_end) {
                let c = char_at(k);
                kept.push(c.saturating_sub(KEEP_BEFORE)..(c + KEEP_AFTER).min(bounds.len() - 1));
            }
            let last = bounds.len() - 1;
            let mut at = 0;
            for k in merge(kept).into_iter().chain(std::iter::once(last..last)) {
                if k.start > at {
                    gaps.push(bounds[at]..bounds[k.start]);
                }
                at = at.max(k.end);
            }
        }
        line_start += line.len();
    }
    gaps
}

/// Byte ranges of `file` that hold sensitive values.
pub fn sensitive_ranges(file: &SourceFile) -> Vec<Range<usize>> {
    let text = file.text.as_str();
    let lines = Lines::new(text);
    let mut out = Vec::new();
    let (docs, issues) = parse::parse(file);
    let broken = issues
        .iter()
        .any(|i| matches!(i, ParseIssue::Syntax { .. } | ParseIssue::Limit { .. }));
    if broken {
        scan_lines(text, &lines, &Scan::Unparsed, &mut out);
    } else {
        // Where the tree has a key, the tree decides; elsewhere (inside a scalar's text, in a
        // comment) the line scan does.
        let mut keys = std::collections::HashSet::new();
        let mut stack: Vec<&Node> = docs.iter().collect();
        while let Some(node) = stack.pop() {
            match &node.kind {
                NodeKind::Scalar(_) => {}
                NodeKind::Seq(items) => stack.extend(items),
                NodeKind::Map(entries) => {
                    for (k, v) in entries {
                        keys.insert(k.span.start);
                        stack.push(k);
                        if sensitive_entry(node, k, v) {
                            let value = after_key(text, &lines, k.span.start, k.span.end, k.flow);
                            // Scalars copied in by an alias live elsewhere in the file.
                            let mut inner: Vec<&Node> = vec![v];
                            while let Some(n) = inner.pop() {
                                match &n.kind {
                                    NodeKind::Scalar(_) if !value.contains(&n.span.start) => {
                                        out.push(scalar_extent(text, &lines, n.span.start, n.flow));
                                    }
                                    NodeKind::Scalar(_) => {}
                                    NodeKind::Seq(items) => inner.extend(items),
                                    NodeKind::Map(entries) => {
                                        inner.extend(entries.iter().flat_map(|(k, v)| [k, v]));
                                    }
                                }
                            }
                            out.push(value);
                        } else {
                            stack.push(v);
                        }
                    }
                }
            }
        }
        // A duplicate key is dropped from the tree but its line is shown.
        for issue in &issues {
            if let ParseIssue::DuplicateKey { key, span, .. } = issue
                && (key == "value" || is_sensitive_key(key))
            {
                let flow = lines.flow_depth_before(span.start) > 0;
                out.push(after_key(text, &lines, span.start, span.end, flow));
            }
        }
        for issue in &issues {
            if let ParseIssue::DuplicateKey { span, .. } = issue {
                keys.insert(span.start);
            }
        }
        scan_lines(text, &lines, &Scan::Parsed { keys }, &mut out);
    }
    private_keys(text, &lines, &mut out);
    out
}

/// Whether the value of entry `k: v` of `map` is sensitive.
fn sensitive_entry(map: &Node, k: &Node, v: &Node) -> bool {
    let Some(name) = k.as_str() else {
        return true; // a complex key: not something a spec has
    };
    if name == "value" {
        return secret_variable(map);
    }
    if !is_sensitive_key(name) || name == "secret_variables_masked" {
        return false;
    }
    // References to Secrets Manager are names, not values: `from: {secret: NAME, key: K}`,
    // `secrets:` sections, and container `secrets: {DB_PASSWORD: {secret: NAME}}`.
    match &v.kind {
        NodeKind::Map(_) if secret_reference(v) => false,
        NodeKind::Seq(_) | NodeKind::Map(_) if name == "secrets" => false,
        _ if name == "secret" => !secret_reference(map),
        _ => true,
    }
}

/// A mapping with only `secret` and `key`: a reference to a secret by name.
fn secret_reference(map: &Node) -> bool {
    match &map.kind {
        NodeKind::Map(entries) => entries
            .iter()
            .all(|(k, _)| matches!(k.as_str(), Some("secret" | "key"))),
        _ => false,
    }
}

/// A variable whose `value` may be a secret: masked or hidden (unless plainly `false`), or
/// with a key that looks secret.
fn secret_variable(map: &Node) -> bool {
    let set = |flag: &str| {
        map.get(flag)
            .is_some_and(|v| !(v.is_null() || v.as_str() == Some("false")))
    };
    set("masked")
        || set("hidden")
        || map
            .get("key")
            .and_then(Node::as_str)
            .is_some_and(is_sensitive_key)
}

/// Line starts of a text.
struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { text, starts }
    }

    fn index(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset) - 1
    }

    /// The line `i` without its line break, and its start.
    fn line(&self, i: usize) -> Option<(usize, &'a str)> {
        let start = *self.starts.get(i)?;
        let end = self.starts.get(i + 1).copied().unwrap_or(self.text.len());
        Some((start, self.text[start..end].trim_end_matches(['\n', '\r'])))
    }

    /// Open `{`/`[` before `offset` on its line (outside quotes).
    fn flow_depth_before(&self, offset: usize) -> usize {
        let (start, _) = self.line(self.index(offset)).unwrap_or((0, ""));
        let mut depth = 0usize;
        for token in Tokens::new(&self.text[start..offset]) {
            match token {
                Token::Open => depth += 1,
                Token::Close => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        depth
    }
}

/// The value after the key at `key_start..key_end`: from after the colon to where the value
/// ends, with the lines that continue it (more indented than the key).
fn after_key(
    text: &str,
    lines: &Lines<'_>,
    key_start: usize,
    key_end: usize,
    flow: bool,
) -> Range<usize> {
    let i = lines.index(key_start);
    let (line_start, line) = lines.line(i).unwrap_or((0, ""));
    let line_end = line_start + line.len();
    let key_end = key_end.clamp(key_start, line_end);
    // The colon after the key (a quoted key's span may be inexact: search the line).
    let colon = text[key_end..line_end]
        .match_indices(':')
        .map(|(c, _)| key_end + c)
        .find(|&c| {
            text[c + 1..]
                .chars()
                .next()
                .is_none_or(|ch| ch.is_whitespace() || ",]}".contains(ch))
        });
    let Some(colon) = colon else {
        return key_end..continued(lines, i, line_end, key_col(text, line_start, key_start));
    };
    let value_start = colon + 1;
    let indent = key_col(text, line_start, key_start);
    value_extent(text, lines, value_start, indent, flow)
}

/// Column (in characters) of `offset` on the line starting at `line_start`.
fn key_col(text: &str, line_start: usize, offset: usize) -> usize {
    text[line_start..offset].chars().count()
}

/// The extent of a scalar written at `start` (used for scalars copied in by an alias).
fn scalar_extent(text: &str, lines: &Lines<'_>, start: usize, flow: bool) -> Range<usize> {
    let (_, line) = lines.line(lines.index(start)).unwrap_or((0, ""));
    let indent = line.len() - line.trim_start().len();
    value_extent(text, lines, start, indent, flow)
}

/// The extent of a value written from `start` (spaces allowed before it), whose key is at
/// column `key_col`: on its line up to where it surely ends, else the rest of the line and the
/// lines after it that are blank or more indented than the key.
fn value_extent(
    text: &str,
    lines: &Lines<'_>,
    start: usize,
    key_col: usize,
    flow: bool,
) -> Range<usize> {
    let i = lines.index(start);
    let (line_start, line) = lines.line(i).unwrap_or((0, ""));
    let line_end = line_start + line.len();
    let start = start.min(line_end);
    let mut rest = &text[start..line_end];
    let lead = rest.len() - rest.trim_start().len();
    let value_start = start + lead;
    rest = &rest[lead..];
    // Skip an anchor or a tag before the value.
    let mut skipped = 0;
    for _ in 0..2 {
        if rest.starts_with(['&', '!']) {
            let token = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let after = &rest[token..];
            let ws = after.len() - after.trim_start().len();
            skipped += token + ws;
            rest = &rest[token + ws..];
        }
    }
    let v = value_start + skipped;
    let on_line = |end: usize| value_start..end;
    let until_eol = || value_start..continued(lines, i, line_end, key_col);
    match rest.chars().next() {
        None | Some('#') => until_eol(),
        Some('"') => match closing_double(&rest[1..]) {
            Some(e) => on_line(v + 1 + e + 1),
            None => until_eol(),
        },
        Some('\'') => match closing_single(&rest[1..]) {
            Some(e) => on_line(v + 1 + e + 1),
            None => until_eol(),
        },
        Some('|' | '>') => until_eol(),
        Some('{' | '[') => match closing_bracket(rest) {
            Some(e) => on_line(v + e + 1),
            None => until_eol(),
        },
        Some(_) if flow => {
            let end = rest
                .char_indices()
                .find(|&(j, ch)| {
                    ",]}".contains(ch) || (ch == '#' && rest[..j].ends_with([' ', '\t']))
                })
                .map(|(j, _)| j)
                .unwrap_or(rest.len());
            if end == rest.len() {
                until_eol()
            } else {
                on_line(v + rest[..end].trim_end().len())
            }
        }
        // A plain scalar in block style may go on over the next, more indented lines.
        Some(_) => until_eol(),
    }
}

/// End (exclusive) of the last line after line `i` that continues a value at column
/// `key_col` (blank or more indented), or `line_end` when none does.
fn continued(lines: &Lines<'_>, i: usize, line_end: usize, key_col: usize) -> usize {
    let mut end = line_end;
    let mut j = i + 1;
    while let Some((start, line)) = lines.line(j) {
        let body = line.trim_start();
        if body.is_empty() {
            j += 1;
            continue;
        }
        let indent = line[..line.len() - body.len()].chars().count();
        if indent <= key_col {
            break;
        }
        end = start + line.len();
        j += 1;
    }
    end
}

/// Offset (in `s`) of the `"` closing a double-quoted string whose content starts `s`.
fn closing_double(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (j, ch) in s.char_indices() {
        match ch {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(j),
            _ => {}
        }
    }
    None
}

/// Offset (in `s`) of the `'` closing a single-quoted string whose content starts `s`.
fn closing_single(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut j = 0;
    while j < bytes.len() {
        if bytes[j] == b'\'' {
            if bytes.get(j + 1) == Some(&b'\'') {
                j += 2;
                continue;
            }
            return Some(j);
        }
        j += 1;
    }
    None
}

/// Offset of the bracket closing the one that starts `s`, on this line.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = 0;
    for token in Tokens::new(s) {
        match token {
            Token::Open => depth += 1,
            Token::Close => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(at);
                }
            }
            Token::Comment(_) => return None,
            _ => {}
        }
        at = token_end(at, &token);
    }
    None
}

/// Lexical tokens of one line that matter for finding values: brackets, quoted strings and
/// the start of a comment.
#[derive(Debug)]
enum Token {
    Open,
    Close,
    /// A quoted string of that many bytes (unterminated: to the end of the line).
    Quoted(usize),
    Other(usize),
    /// A comment from here to the end of the line.
    Comment(usize),
}

fn token_end(at: usize, token: &Token) -> usize {
    match token {
        Token::Open | Token::Close => at + 1,
        Token::Quoted(n) | Token::Other(n) | Token::Comment(n) => at + n,
    }
}

struct Tokens<'a> {
    s: &'a str,
    at: usize,
}

impl<'a> Tokens<'a> {
    fn new(s: &'a str) -> Self {
        Self { s, at: 0 }
    }
}

impl Iterator for Tokens<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        let rest = &self.s[self.at..];
        let ch = rest.chars().next()?;
        let token = match ch {
            '{' | '[' => Token::Open,
            '}' | ']' => Token::Close,
            '"' => Token::Quoted(closing_double(&rest[1..]).map_or(rest.len(), |e| e + 2)),
            '\'' => Token::Quoted(closing_single(&rest[1..]).map_or(rest.len(), |e| e + 2)),
            '#' if self.at == 0 || self.s[..self.at].ends_with([' ', '\t']) => {
                Token::Comment(rest.len())
            }
            _ => Token::Other(ch.len_utf8()),
        };
        self.at = token_end(self.at, &token);
        Some(token)
    }
}

/// How [`scan_lines`] decides.
enum Scan {
    /// The file does not parse: every sensitive key, and every `value:`.
    Unparsed,
    /// The file parses: only keys the tree does not have (at these offsets), i.e. text inside
    /// scalars and comments; `value:` when its line also says `masked: true`, `hidden: true` or
    /// has a secret-looking `key:`.
    Parsed {
        keys: std::collections::HashSet<usize>,
    },
}

/// Scans every line for `key: value` of sensitive keys (see [`Scan`]).
fn scan_lines(text: &str, lines: &Lines<'_>, scan: &Scan, out: &mut Vec<Range<usize>>) {
    let mut depth = 0usize;
    for i in 0..lines.starts.len() {
        let Some((line_start, line)) = lines.line(i) else {
            break;
        };
        let depth_at_start = depth;
        let mut comment = line.len();
        let mut at = 0;
        for token in Tokens::new(line) {
            match token {
                Token::Open => depth += 1,
                Token::Close => depth = depth.saturating_sub(1),
                Token::Comment(_) => comment = at,
                _ => {}
            }
            at = token_end(at, &token);
        }
        for (c, _) in line.match_indices(':') {
            let after = line[c + 1..].chars().next();
            if !after.is_none_or(|ch| ch.is_whitespace() || ",]}".contains(ch)) {
                continue;
            }
            let Some((key, key_start)) = key_before(line, c) else {
                continue;
            };
            let abs_key = line_start + key_start;
            let sensitive = match scan {
                Scan::Unparsed => {
                    key == "value" || (is_sensitive_key(key) && key != "secret_variables_masked")
                }
                Scan::Parsed { keys } => {
                    let tree_key =
                        keys.contains(&abs_key) || (abs_key > 0 && keys.contains(&(abs_key - 1)));
                    !tree_key
                        && ((key == "value" && secret_variable_line(line))
                            || (is_sensitive_key(key) && key != "secret_variables_masked"))
                }
            };
            if !sensitive {
                continue;
            }
            let value = if c >= comment {
                line_start + c + 1..line_start + line.len()
            } else {
                value_extent(
                    text,
                    lines,
                    line_start + c + 1,
                    key_col(text, line_start, abs_key),
                    depth_at_start > 0 || lines.flow_depth_before(abs_key) > 0,
                )
            };
            // `secrets:` heads a list or mapping of names; only a scalar after it is suspect.
            if key == "secrets" {
                let rest = line[c + 1..].trim_start();
                if rest.is_empty() || rest.starts_with(['{', '[', '#']) {
                    continue;
                }
            }
            out.push(value);
        }
    }
}

/// Whether a line looks like it holds a masked, hidden or secret-looking variable.
fn secret_variable_line(line: &str) -> bool {
    line.contains("masked: true")
        || line.contains("hidden: true")
        || line.match_indices("key:").any(|(k, _)| {
            line[k + 4..]
                .trim_start()
                .split(|c: char| c.is_whitespace() || ",}]".contains(c))
                .next()
                .is_some_and(is_sensitive_key)
        })
}

/// The key ending at byte `colon` of `line`: a quoted key, or the run of name characters.
fn key_before(line: &str, colon: usize) -> Option<(&str, usize)> {
    let before = &line[..colon];
    let trimmed = before.trim_end();
    if let Some(q) = trimmed.chars().last().filter(|c| *c == '"' || *c == '\'') {
        let inner = &trimmed[..trimmed.len() - 1];
        let open = inner.rfind(q)?;
        return Some((&inner[open + 1..], open));
    }
    let start = trimmed
        .char_indices()
        .rev()
        .find(|(_, ch)| ch.is_whitespace() || "{[,\"'#&*!|>?".contains(*ch))
        .map(|(j, ch)| j + ch.len_utf8())
        .unwrap_or(0);
    let key = &trimmed[start..];
    (!key.is_empty()).then_some((key, start))
}

/// The body of PEM private keys (`-----BEGIN ... PRIVATE KEY-----` to `-----END`), on one
/// line (escaped `\n`) or over several.
fn private_keys(text: &str, lines: &Lines<'_>, out: &mut Vec<Range<usize>>) {
    let mut open: Option<usize> = None;
    for i in 0..lines.starts.len() {
        let Some((line_start, line)) = lines.line(i) else {
            break;
        };
        let mut from = 0;
        loop {
            match open {
                None => {
                    let Some(b) = line[from..].find("-----BEGIN") else {
                        break;
                    };
                    let head = &line[from + b..];
                    let Some(e) = head[10..].find("-----") else {
                        // The header itself is cut: hide the rest of the line.
                        out.push(line_start + from + b..line_start + line.len());
                        break;
                    };
                    let body_start = from + b + 10 + e + 5;
                    if head[..10 + e].contains("PRIVATE KEY") {
                        open = Some(line_start + body_start);
                    }
                    from = body_start;
                }
                Some(start) => match line[from..].find("-----END") {
                    Some(e) => {
                        out.push(start..line_start + from + e);
                        open = None;
                        from += e + 8;
                    }
                    None => {
                        out.push(start..line_start + line.len());
                        open = Some(lines.starts.get(i + 1).copied().unwrap_or(text.len()));
                        break;
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(text: &str) -> String {
        Shown::new(&SourceFile::new("t.yaml".into(), text.into()), &[]).text
    }

    #[test]
    fn sensitive_keys_are_masked_in_flow_and_block_style() {
        assert_eq!(
            shown("users:\n  - {username: dev1, email: a@b.c, password: S3cr3t-x, name: D}\n"),
            "users:\n  - {username: dev1, email: a@b.c, password: ***, name: D}\n"
        );
        assert_eq!(
            shown("token: \"S3cr3t \\\" x\"  # note\nusers: []\n"),
            "token: ***  # note\nusers: []\n"
        );
        assert_eq!(
            shown("a:\n  api_token: |\n    S3cr3t\n    more\n  b: 1\n"),
            "a:\n  api_token: ***\n    ***\n    ***\n  b: 1\n"
        );
        assert_eq!(
            shown("credentials:\n  user: x\n  pass: S3cr3t\nother: 1\n"),
            "credentials:\n  ***\n  ***\nother: 1\n"
        );
    }

    #[test]
    fn masked_and_secret_looking_variable_values_are_masked_others_shown() {
        let text = "v:\n  - {key: A, value: S3cr3t-1, masked: true, descripton: x}\n  - {key: DB_PASSWORD, value: 'S3cr3t-2'}\n  - {key: PLAIN, value: shown-1}\n  - key: B\n    hidden: true\n    value: S3cr3t-3\n";
        let out = shown(text);
        assert!(!out.contains("S3cr3t"), "{out}");
        assert!(out.contains("value: shown-1"), "{out}");
        assert!(
            out.contains("value: ***, masked: true, descripton: x}"),
            "{out}"
        );
    }

    #[test]
    fn secret_references_are_names_and_stay_visible() {
        let text = "secrets:\n  - name: app/db-password\nservices:\n  - secrets: {DB_PASSWORD: {secret: app/db-password, key: pw}}\n    from: {secret: app/token}\npolicies: {secret_variables_masked: warn}\n";
        assert_eq!(shown(text), text);
    }

    #[test]
    fn unparsable_text_is_scanned_line_by_line() {
        let text = "projects:\n  - variables:\n      items:\n        - {key: K, masked: true, value: \"S3cr3t\\q\"}\n  - [unclosed\n  token: S3cr3t-2 # c\n";
        let out = shown(text);
        assert!(!out.contains("S3cr3t"), "{out}");
        assert_eq!(out.lines().count(), text.lines().count());
        assert!(out.contains("key: K, masked: true, value: ***"), "{out}");
    }

    #[test]
    fn sensitive_pairs_inside_scalar_text_are_masked() {
        let text = "description: |\n  old setup: password: S3cr3t-1\n  - {key: K, masked: true, value: S3cr3t-2}\nname: \"token: S3cr3t-3\"\n";
        let out = shown(text);
        assert!(!out.contains("S3cr3t"), "{out}");
        assert!(out.contains("description: |"), "{out}");
    }

    #[test]
    fn comments_private_keys_and_duplicates_are_masked() {
        let text = "a: 1 # password: S3cr3t-1\nk: \"-----BEGIN RSA PRIVATE KEY-----\\nS3cr3t-2\\n-----END RSA PRIVATE KEY-----\"\nb: |\n  -----BEGIN PRIVATE KEY-----\n  S3cr3t-3\n  -----END PRIVATE KEY-----\ntoken: x\ntoken: S3cr3t-4\n";
        let out = shown(text);
        assert!(!out.contains("S3cr3t"), "{out}");
        assert!(out.contains("-----END RSA PRIVATE KEY-----"), "{out}");
    }

    #[test]
    fn offsets_map_both_ways_around_masks() {
        let text = "- {password: S3cr3t-long-value, descripton: x}\n";
        let file = SourceFile::new("t.yaml".into(), text.into());
        let s = Shown::new(&file, &[]);
        let typo = text.find("descripton").unwrap();
        let at = s.start(typo);
        assert_eq!(&s.text[at..at + 10], "descripton");
        assert_eq!(s.original(at), typo);
        let value = text.find("S3cr3t").unwrap();
        assert_eq!(&s.text[s.start(value + 3)..s.end(value + 5)], MASK);
        assert_eq!(s.original(s.start(value)), value);
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(
            shown("name: \"a\u{7}b\u{1b}[31m\"\r\nx: \u{202e}y\r\n"),
            "name: \"a\\u{7}b\\u{1b}[31m\"\r\nx: \\u{202e}y\r\n"
        );
    }

    #[test]
    fn long_lines_are_shortened_around_kept_offsets() {
        let text = format!("description: \"{}\", typo: 1\n", "x".repeat(10_000));
        let file = SourceFile::new("t.yaml".into(), text.clone());
        let typo = text.find("typo").unwrap();
        let s = Shown::new(&file, &[typo]);
        assert!(s.text.len() < 400, "{}", s.text.len());
        let at = s.start(typo);
        assert_eq!(&s.text[at..at + 4], "typo");
        assert_eq!(s.original(at), typo);
    }
}
