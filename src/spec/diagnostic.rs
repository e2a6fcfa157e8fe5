//! Spec errors: what went wrong, where (file:line:column), and what to do.
//!
//! Rendered with codespan-reporting. A diagnostic marked sensitive shows its location and the
//! key it is about, never the value (the source is cut right after the key).

use codespan_reporting::diagnostic::{Diagnostic as Report, Label};
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term::{self, termcolor::WriteColor};

use super::source::{FileId, Origin, SourceMap, Span};

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

/// Renders diagnostics, sorted by file and position, followed by a summary line.
pub fn render(
    sources: &SourceMap,
    diagnostics: &[Diagnostic],
    contacted: bool,
    out: &mut dyn WriteColor,
) -> std::io::Result<()> {
    let mut files = SimpleFiles::new();
    let ids: Vec<usize> = sources
        .iter()
        .map(|(_, f)| files.add(f.path.display().to_string(), f.text.clone()))
        .collect();
    let config = term::Config::default();
    for d in diagnostics {
        let mut report = Report::error().with_message(&d.message);
        let mut notes = Vec::new();
        match d.origin {
            Some(origin) if d.sensitive => {
                let file = sources.get(origin.file);
                let cut = files.add(
                    file.path.display().to_string(),
                    file.text[..origin.span.end].to_string(),
                );
                report = report.with_labels(vec![Label::primary(
                    cut,
                    origin.span.start..origin.span.end,
                )]);
                notes.push("the value is not shown: it may be a secret".to_string());
            }
            Some(origin) => {
                let mut labels = vec![Label::primary(
                    ids[origin.file.0],
                    origin.span.start..origin.span.end,
                )];
                labels.extend(d.related.iter().map(|(o, note)| {
                    Label::secondary(ids[o.file.0], o.span.start..o.span.end).with_message(note)
                }));
                report = report.with_labels(labels);
            }
            None => {}
        }
        notes.extend(d.help.iter().map(|h| format!("help: {h}")));
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
