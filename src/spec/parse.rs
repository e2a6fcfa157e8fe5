//! YAML text → a tree of located nodes. The only module that names the YAML crate.
//!
//! serde_yaml (named in the original design) is unmaintained since 2024 and gives no positions
//! for values, only for the first error of a document; every spec error must name
//! file:line:column and all of them must be reported at once. So the text is parsed with the
//! event parser of `yaml-rust2` into [`Node`]s that carry their span, and typed decoding runs over
//! that tree ([`super::de`]). Swapping the YAML crate means rewriting this file only.
//!
//! Must never: resolve types (that is the decoder's job) or stop at the first duplicate key.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::source::{SourceFile, Span};

/// A YAML node with the span of its first token.
#[derive(Clone, Debug)]
pub struct Node {
    pub kind: NodeKind,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum NodeKind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Entries in document order; keys are unique (duplicates are reported and dropped).
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug)]
pub struct Scalar {
    pub text: String,
    /// Plain (unquoted, not a block scalar): only plain scalars resolve to null, bools, numbers.
    pub plain: bool,
}

impl Node {
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar(s) if s.plain && matches!(s.text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key node and value of `key` in a mapping.
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(s) => Some(&s.text),
            _ => None,
        }
    }

    pub fn items(&self) -> &[Node] {
        match &self.kind {
            NodeKind::Seq(items) => items,
            _ => &[],
        }
    }

    /// Short description of the node's type, for messages (never its content).
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar(_) if self.is_null() => "an empty value",
            NodeKind::Scalar(_) => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

/// A problem found while reading YAML text.
#[derive(Debug)]
pub enum ParseIssue {
    Syntax {
        span: Span,
        message: String,
    },
    DuplicateKey {
        key: String,
        span: Span,
        first: Span,
    },
}

/// Parses every document of a file. Duplicate keys are reported and the first one kept; a syntax
/// error ends the file (nothing after it can be trusted).
pub fn parse(file: &SourceFile) -> (Vec<Node>, Vec<ParseIssue>) {
    let mut builder = Builder {
        file,
        stack: Vec::new(),
        docs: Vec::new(),
        anchors: Default::default(),
        issues: Vec::new(),
    };
    let mut parser = Parser::new_from_str(&file.text);
    if let Err(e) = parser.load(&mut builder, true) {
        let start = marker_offset(file, e.marker());
        builder.issues.push(ParseIssue::Syntax {
            span: Span::new(start, start + 1),
            message: e.info().to_string(),
        });
        return (Vec::new(), builder.issues);
    }
    (builder.docs, builder.issues)
}

/// Whether `text` is well-formed YAML (for checks of YAML files that are not specs, such as
/// the shipped CI template); the error names line:column.
pub fn check_syntax(text: &str) -> Result<usize, String> {
    let file = SourceFile::new("text".into(), text.into());
    let (docs, issues) = parse(&file);
    match issues.first() {
        None => Ok(docs.len()),
        Some(ParseIssue::Syntax { span, message })
        | Some(ParseIssue::DuplicateKey {
            span, key: message, ..
        }) => {
            let (line, col) = file.line_col(span.start);
            Err(format!("{line}:{col}: {message}"))
        }
    }
}

fn marker_offset(file: &SourceFile, mark: &Marker) -> usize {
    // yaml-rust2 markers are 1-based lines and 0-based columns counted in characters.
    file.offset(mark.line(), mark.col() + 1)
}

enum Frame {
    Seq {
        span: Span,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        span: Span,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

struct Builder<'a> {
    file: &'a SourceFile,
    stack: Vec<Frame>,
    docs: Vec<Node>,
    anchors: std::collections::HashMap<usize, Node>,
    issues: Vec<ParseIssue>,
}

impl Builder<'_> {
    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    let name = k.as_str().map(str::to_owned);
                    let first = name.as_deref().and_then(|n| {
                        entries
                            .iter()
                            .find(|(e, _)| e.as_str() == Some(n))
                            .map(|(e, _)| e.span)
                    });
                    match (name, first) {
                        (Some(key), Some(first)) => self.issues.push(ParseIssue::DuplicateKey {
                            key,
                            span: k.span,
                            first,
                        }),
                        _ => entries.push((k, node)),
                    }
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let start = marker_offset(self.file, &mark);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == TScalarStyle::Plain;
                let len = match style {
                    TScalarStyle::Plain => text.len(),
                    TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => text.len() + 2,
                    TScalarStyle::Literal | TScalarStyle::Folded => 1,
                };
                let end = (start + len.max(1)).min(self.file.text.len().max(start));
                let node = Node {
                    kind: NodeKind::Scalar(Scalar { text, plain }),
                    span: Span::new(start, end),
                };
                self.push_node(node, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                span: Span::new(start, start + 1),
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                span: Span::new(start, start + 1),
                anchor,
                entries: Vec::new(),
                key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq {
                        span,
                        anchor,
                        items,
                    }) => (
                        Node {
                            kind: NodeKind::Seq(items),
                            span,
                        },
                        anchor,
                    ),
                    Some(Frame::Map {
                        span,
                        anchor,
                        entries,
                        ..
                    }) => {
                        // A mapping is located at its first key (the start event's mark may lag).
                        let span = entries.first().map(|(k, _)| k.span).unwrap_or(span);
                        (
                            Node {
                                kind: NodeKind::Map(entries),
                                span,
                            },
                            anchor,
                        )
                    }
                    None => return,
                };
                self.push_node(node, anchor);
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().unwrap_or(Node {
                    kind: NodeKind::Scalar(Scalar {
                        text: String::new(),
                        plain: true,
                    }),
                    span: Span::new(start, start + 1),
                });
                self.push_node(node, 0);
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> (Vec<Node>, Vec<ParseIssue>) {
        parse(&SourceFile::new("t.yaml".into(), text.into()))
    }

    #[test]
    fn spans_point_at_values() {
        let text = "a: 1\nbb:\n  - x\n  - \"y\"\n";
        let (docs, issues) = parse_str(text);
        assert!(issues.is_empty());
        let list = docs[0].get("bb").unwrap();
        assert_eq!(
            &text[list.items()[0].span.start..list.items()[0].span.end],
            "x"
        );
        assert_eq!(
            &text[list.items()[1].span.start..list.items()[1].span.end],
            "\"y\""
        );
    }

    #[test]
    fn duplicate_keys_are_reported_and_first_kept() {
        let (docs, issues) = parse_str("a: 1\nb: 2\na: 3\n");
        assert_eq!(docs[0].get("a").unwrap().as_str(), Some("1"));
        assert!(matches!(&issues[..], [ParseIssue::DuplicateKey { key, .. }] if key == "a"));
    }

    #[test]
    fn syntax_error_has_a_position() {
        let text = "a: [1, 2\nb: 3\n";
        let (_, issues) = parse_str(text);
        assert!(matches!(&issues[..], [ParseIssue::Syntax { .. }]));
    }

    #[test]
    fn aliases_resolve_to_anchored_nodes() {
        let (docs, _) = parse_str("base: &b {x: 1}\nother: *b\n");
        assert_eq!(
            docs[0].get("other").unwrap().get("x").unwrap().as_str(),
            Some("1")
        );
    }
}
