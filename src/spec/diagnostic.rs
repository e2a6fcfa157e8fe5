//! Spec errors: what went wrong, where (file:line:column), and what to do.
//!
//! Rendered with codespan-reporting. Every source line shown, whatever the diagnostic is about,
//! comes from the file's shown text ([`super::redact`]): values of sensitive keys are `***`
//! and very long lines are shortened; locations (file:line:column) are those of the file as
//! written. A diagnostic marked sensitive also cuts the source right after the key it is about.

use std::collections::BTreeMap;
use std::ops::Range;

use codespan_reporting::diagnostic::{Diagnostic as Report, Label};
use codespan_reporting::files::{Error as FilesError, Files, Location};
use codespan_reporting::term::{self, termcolor::WriteColor};

use super::redact::Shown;
use super::source::{FileId, Origin, SourceFile, SourceMap, Span};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// None for errors about the directory itself (no file to point at).
    pub origin: Option<Origin>,
    pub message: String,
    pub help: Option<String>,
    /// Other places that explain this one (e.g. the first of two duplicates).
    pub related: Vec<(Origin, String)>,
    /// Do not show the source after the span's end (the value may be a secret).
    pub sensitive: bool,
}

impl Diagnostic {
    pub fn at(file: FileId, span: Span, message: impl Into<String>) -> Self {
        Self {
            origin: Some(Origin { file, span }),
            message: message.into(),
            help: None,
            related: Vec::new(),
            sensitive: false,
        }
    }

    pub fn global(message: impl Into<String>) -> Self {
        Self {
            origin: None,
            message: message.into(),
            help: None,
            related: Vec::new(),
            sensitive: false,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn related(mut self, origin: Origin, note: impl Into<String>) -> Self {
        self.related.push((origin, note.into()));
        self
    }

    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }
}

/// The files as codespan sees them: the shown text of each source file (or a prefix of it, for
/// sensitive diagnostics), with locations reported in the file as written.
struct ShownFiles<'a> {
    shown: Vec<(&'a SourceFile, Shown, Vec<usize>)>,
    /// (index in `shown`, length of the prefix shown)
    views: Vec<(usize, usize)>,
}

impl ShownFiles<'_> {
    fn view(&self, id: usize) -> Result<(&SourceFile, &Shown, &[usize], usize), FilesError> {
        let (i, len) = *self.views.get(id).ok_or(FilesError::FileMissing)?;
        let (file, shown, starts) = &self.shown[i];
        Ok((file, shown, starts, len))
    }

    fn add_view(&mut self, file: usize, len: usize) -> usize {
        self.views.push((file, len));
        self.views.len() - 1
    }
}

impl<'a> Files<'a> for ShownFiles<'_> {
    type FileId = usize;
    type Name = String;
    type Source = &'a str;

    fn name(&'a self, id: usize) -> Result<String, FilesError> {
        Ok(self
            .view(id)?
            .0
            .path
            .display()
            .to_string()
            .chars()
            .map(|c| match unprintable(c) {
                true => escaped(c),
                false => c.to_string(),
            })
            .collect())
    }

    fn source(&'a self, id: usize) -> Result<&'a str, FilesError> {
        let (_, shown, _, len) = self.view(id)?;
        Ok(&shown.text[..len])
    }

    fn line_index(&'a self, id: usize, byte_index: usize) -> Result<usize, FilesError> {
        let (_, _, starts, len) = self.view(id)?;
        let lines = starts.partition_point(|&s| s <= len);
        Ok(starts[..lines]
            .partition_point(|&s| s <= byte_index)
            .saturating_sub(1))
    }

    fn line_range(&'a self, id: usize, line_index: usize) -> Result<Range<usize>, FilesError> {
        let (_, _, starts, len) = self.view(id)?;
        let lines = starts.partition_point(|&s| s <= len);
        let start = |i: usize| match i.cmp(&lines) {
            std::cmp::Ordering::Less => Ok(starts[i]),
            std::cmp::Ordering::Equal => Ok(len),
            std::cmp::Ordering::Greater => Err(FilesError::LineTooLarge {
                given: i,
                max: lines - 1,
            }),
        };
        Ok(start(line_index)?..start(line_index + 1)?)
    }

    /// The location in the file as written (the shown text may have masks and cuts before it).
    fn location(&'a self, id: usize, byte_index: usize) -> Result<Location, FilesError> {
        let (file, shown, _, _) = self.view(id)?;
        let (line_number, column_number) = file.line_col(shown.original(byte_index));
        Ok(Location {
            line_number,
            column_number,
        })
    }
}

/// Longest quoted value (between backticks) in a message, in characters; longer ones show a
/// prefix and their length.
const QUOTE_MAX: usize = 64;
const QUOTE_PREFIX: usize = 40;
/// Longest run of text between backticks otherwise (messages and help are far shorter).
const TEXT_MAX: usize = 1_000;

/// A character that must not reach a terminal as is: control characters (other than tab and
/// line break) and bidirectional overrides.
pub fn unprintable(c: char) -> bool {
    (c.is_control() && c != '\t' && c != '\n')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// `c` written as an escape (`\u{7}`).
pub fn escaped(c: char) -> String {
    format!("\\u{{{:x}}}", c as u32)
}

/// A message as shown: every value quoted in it (between backticks) bounded to a prefix and its
/// length, unprintable characters escaped.
pub fn bounded(message: &str) -> String {
    bounded_hiding(message, &[])
}

/// [`bounded`], with any quoted value that is part of one of `secrets` (text of the file that
/// the diagnostic points into and that is masked there) masked too.
fn bounded_hiding(message: &str, secrets: &[&str]) -> String {
    let mut out = String::with_capacity(message.len().min(4 * TEXT_MAX));
    // The length of a shortened quote, written after its closing backtick.
    let mut pending: Option<String> = None;
    for (i, part) in message.split('`').enumerate() {
        if i > 0 {
            out.push('`');
            out.extend(pending.take());
        }
        let quoted = i % 2 == 1;
        let secret =
            quoted && !part.trim().is_empty() && secrets.iter().any(|s| s.contains(part.trim()));
        let part = if secret {
            super::redact::MASK.into()
        } else if quoted {
            super::redact::mask_inline(part)
        } else if part.contains("PRIVATE KEY") {
            // Unquoted text is the message's own; a key block in it came from the file.
            super::redact::MASK.into()
        } else {
            part.into()
        };
        let (max, keep) = if quoted {
            (QUOTE_MAX, QUOTE_PREFIX)
        } else {
            (TEXT_MAX, TEXT_MAX)
        };
        let count = part.chars().count();
        for c in part.chars().take(if count > max { keep } else { count }) {
            if unprintable(c) || (quoted && c == '\n') {
                out.push_str(&escaped(c));
            } else {
                out.push(c);
            }
        }
        if count > max {
            out.push('…');
            pending = Some(format!(" ({count} characters)"));
        }
    }
    out.extend(pending);
    out
}

/// Renders diagnostics, sorted by file and position, followed by a summary line.
pub fn render(
    sources: &SourceMap,
    diagnostics: &[Diagnostic],
    contacted: bool,
    out: &mut dyn WriteColor,
) -> std::io::Result<()> {
    // The places each file is pointed at (long lines are shortened elsewhere).
    let mut keep: BTreeMap<FileId, Vec<usize>> = BTreeMap::new();
    for d in diagnostics {
        let origins = d.origin.iter().chain(d.related.iter().map(|(o, _)| o));
        for o in origins {
            keep.entry(o.file)
                .or_default()
                .extend([o.span.start, o.span.end]);
        }
    }
    let mut files = ShownFiles {
        shown: Vec::new(),
        views: Vec::new(),
    };
    let mut view_of: BTreeMap<FileId, usize> = BTreeMap::new();
    for (id, points) in &keep {
        let file = sources.get(*id);
        let shown = Shown::new(file, points);
        let starts = std::iter::once(0)
            .chain(shown.text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let len = shown.text.len();
        files.shown.push((file, shown, starts));
        let view = files.add_view(files.shown.len() - 1, len);
        view_of.insert(*id, view);
    }
    let config = term::Config::default();
    for d in diagnostics {
        // Text of the file that the diagnostic points into and that is masked there (a value
        // that became a key through a mistake is quoted as a key).
        let secrets: Vec<&str> = d
            .origin
            .iter()
            .flat_map(|o| {
                let file = sources.get(o.file);
                let shown = &files.shown[files.views[view_of[&o.file]].0].1;
                shown
                    .masked_at(o.span.start, o.span.end)
                    .map(move |r| &file.text[r])
            })
            .collect();
        let mut report = Report::error().with_message(bounded_hiding(&d.message, &secrets));
        let mut notes = Vec::new();
        let shown_span = |files: &ShownFiles<'_>, o: &Origin| {
            let view = view_of[&o.file];
            let shown = &files.shown[files.views[view].0].1;
            let start = shown.start(o.span.start);
            (view, start..shown.end(o.span.end).max(start))
        };
        match d.origin {
            Some(origin) if d.sensitive => {
                let (view, span) = shown_span(&files, &origin);
                let cut = files.add_view(files.views[view].0, span.end);
                report = report.with_labels(vec![Label::primary(cut, span)]);
                notes.push("the value is not shown: it may be a secret".to_string());
            }
            Some(origin) => {
                let (view, span) = shown_span(&files, &origin);
                let mut labels = vec![Label::primary(view, span)];
                labels.extend(d.related.iter().map(|(o, note)| {
                    let (view, span) = shown_span(&files, o);
                    Label::secondary(view, span).with_message(bounded(note))
                }));
                report = report.with_labels(labels);
            }
            None => {}
        }
        notes.extend(
            d.help
                .iter()
                .map(|h| format!("help: {}", bounded_hiding(h, &secrets))),
        );
        report = report.with_notes(notes);
        term::emit(out, &config, &files, &report).map_err(std::io::Error::other)?;
    }
    let files_with_errors: std::collections::BTreeSet<_> = diagnostics
        .iter()
        .filter_map(|d| d.origin.map(|o| o.file))
        .collect();
    let n = diagnostics.len();
    writeln!(
        out,
        "error: {n} error{} in {} file{}; nothing was {}changed",
        if n == 1 { "" } else { "s" },
        files_with_errors.len(),
        if files_with_errors.len() == 1 {
            ""
        } else {
            "s"
        },
        if contacted { "" } else { "contacted or " },
    )
}

/// Sorts diagnostics by file, then position, then message, for stable output.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| {
        let key = |d: &Diagnostic| d.origin.map(|o| (o.file, o.span.start));
        key(a).cmp(&key(b)).then_with(|| a.message.cmp(&b.message))
    });
}

#[cfg(test)]
mod tests {
    use super::bounded;

    #[test]
    fn quoted_values_are_bounded_and_escaped() {
        let long = "x".repeat(10_000_000);
        let shown = bounded(&format!("invalid username `{long}`, see `other`"));
        assert_eq!(
            shown,
            format!(
                "invalid username `{}…` (10000000 characters), see `other`",
                "x".repeat(40)
            )
        );
        assert_eq!(bounded("branch `a\u{7}b`"), "branch `a\\u{7}b`");
        assert_eq!(bounded("short `value` stays"), "short `value` stays");
        // A value that became a key is quoted as one: what looks secret in it is masked.
        assert_eq!(
            bounded("unknown field `-----BEGIN RSA PRIVATE KEY-----\nMIIE`"),
            "unknown field `***`"
        );
        assert_eq!(
            bounded("unknown field `password: hunter2`"),
            "unknown field `password: ***`"
        );
        assert_eq!(
            bounded("unknown field `passwords`"),
            "unknown field `passwords`"
        );
        // A backtick inside a value cannot let the rest of it through unbounded.
        let shown = bounded(&format!("name `a`{long}`"));
        assert!(shown.len() < 2_000, "{}", shown.len());
    }
}
