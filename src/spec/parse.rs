//! YAML text → a tree of located nodes. The only module that names the YAML crate.
//!
//! serde_yaml (named in the original design) is unmaintained since 2024 and gives no positions
//! for values, only for the first error of a document; every spec error must name
//! file:line:column and all of them must be reported at once. So the text is parsed with the
//! event parser of `yaml-rust2` into [`Node`]s that carry their span, and typed decoding runs over
//! that tree ([`super::de`]). Swapping the YAML crate means rewriting this file only.
//!
//! Bounded: a file may nest at most [`MAX_DEPTH`] levels, and its aliases (`*name`) may copy at
//! most [`MAX_ALIASES`] times, [`MAX_ALIAS_NODES`] nodes and [`MAX_ALIAS_BYTES`] bytes of text
//! in total (a "billion laughs" document is refused at the alias that goes over, before it
//! allocates). The event loop is iterative, so deep nesting cannot exhaust the stack either.
//!
//! Must never: resolve types (that is the decoder's job) or stop at the first duplicate key.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::source::{SourceFile, Span};

/// A YAML node with the span of its first token.
#[derive(Clone, Debug)]
pub struct Node {
    pub kind: NodeKind,
    pub span: Span,
    /// Written in flow style (`{a: 1}`, `[a, b]`) or inside such a collection.
    pub flow: bool,
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

/// Deepest nesting of lists and mappings in a file (a spec needs about 8).
pub const MAX_DEPTH: usize = 64;
/// Alias uses (`*name`) per file.
pub const MAX_ALIASES: usize = 10_000;
/// Nodes copied by aliases per file (each alias copies its anchored node with everything in it).
pub const MAX_ALIAS_NODES: usize = 100_000;
/// Bytes of scalar text copied by aliases per file.
pub const MAX_ALIAS_BYTES: usize = 4 << 20;

/// A problem found while reading YAML text.
#[derive(Debug)]
pub enum ParseIssue {
    Syntax {
        span: Span,
        message: String,
    },
    /// The file goes over one of the parser's bounds; nothing after this point was read.
    Limit {
        span: Span,
        message: String,
        help: String,
    },
    DuplicateKey {
        key: String,
        span: Span,
        first: Span,
    },
}

/// Parses every document of a file. Duplicate keys are reported and the first one kept; a syntax
/// error or a bound exceeded ends the file (nothing after it can be trusted).
pub fn parse(file: &SourceFile) -> (Vec<Node>, Vec<ParseIssue>) {
    let mut builder = Builder {
        file,
        stack: Vec::new(),
        docs: Vec::new(),
        anchors: HashMap::new(),
        aliases: 0,
        copied: Weight::default(),
        issues: Vec::new(),
    };
    // Driven event by event (not `Parser::load`, which recurses per nesting level and cannot be
    // stopped by the receiver).
    let mut parser = Parser::new_from_str(&file.text);
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => break,
            Ok((ev, mark)) => {
                if let Err(issue) = builder.on_event(ev, &mark) {
                    builder.issues.push(issue);
                    return (Vec::new(), builder.issues);
                }
            }
            Err(e) => {
                let start = marker_offset(file, e.marker());
                builder.issues.push(ParseIssue::Syntax {
                    span: Span::new(start, start + 1),
                    message: e.info().to_string(),
                });
                return (Vec::new(), builder.issues);
            }
        }
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
        | Some(ParseIssue::Limit { span, message, .. })
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

/// Size of a node: how many nodes it holds (itself included) and their scalar bytes.
#[derive(Clone, Copy, Debug, Default)]
struct Weight {
    nodes: usize,
    bytes: usize,
}

impl Weight {
    fn add(&mut self, other: Weight) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

enum Frame {
    Seq {
        span: Span,
        anchor: usize,
        flow: bool,
        items: Vec<Node>,
        weight: Weight,
    },
    Map {
        span: Span,
        anchor: usize,
        flow: bool,
        entries: Vec<(Node, Node)>,
        /// Keys already in `entries`, for duplicates in constant time.
        keys: HashMap<String, Span>,
        key: Option<Node>,
        weight: Weight,
    },
}

struct Builder<'a> {
    file: &'a SourceFile,
    stack: Vec<Frame>,
    docs: Vec<Node>,
    anchors: HashMap<usize, (Node, Weight)>,
    /// Alias uses so far in this file, and what they copied.
    aliases: usize,
    copied: Weight,
    issues: Vec<ParseIssue>,
}

impl Builder<'_> {
    /// Whether the innermost open collection is in flow style.
    fn in_flow(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame::Seq { flow: true, .. } | Frame::Map { flow: true, .. })
        )
    }

    /// Whether a collection starting at `start` is in flow style.
    fn flow_at(&self, start: usize) -> bool {
        self.in_flow() || self.file.text[start.min(self.file.text.len())..].starts_with(['{', '['])
    }

    fn push_node(&mut self, node: Node, anchor: usize, weight: Weight) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), weight));
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq {
                items, weight: w, ..
            }) => {
                w.add(weight);
                items.push(node);
            }
            Some(Frame::Map {
                entries,
                keys,
                key,
                weight: w,
                ..
            }) => {
                w.add(weight);
                match key.take() {
                    None => *key = Some(node),
                    Some(k) => match k.as_str() {
                        Some(name) => match keys.get(name) {
                            Some(first) => self.issues.push(ParseIssue::DuplicateKey {
                                key: name.to_owned(),
                                span: k.span,
                                first: *first,
                            }),
                            None => {
                                keys.insert(name.to_owned(), k.span);
                                entries.push((k, node));
                            }
                        },
                        None => entries.push((k, node)),
                    },
                }
            }
        }
    }

    fn open(&mut self, frame: Frame, span: Span) -> Result<(), ParseIssue> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(ParseIssue::Limit {
                span,
                message: format!("lists and mappings nested deeper than {MAX_DEPTH} levels"),
                help: "a desired state needs far fewer levels: check the indentation and the brackets here".into(),
            });
        }
        self.stack.push(frame);
        Ok(())
    }

    /// The span of the alias token (`*name`) starting at `start`.
    fn alias_span(&self, start: usize) -> Span {
        let rest = &self.file.text[start.min(self.file.text.len())..];
        let len = rest
            .char_indices()
            .skip(1)
            .find(|(_, c)| c.is_whitespace() || ",[]{}".contains(*c))
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        Span::new(start, start + len.max(1))
    }

    /// Counts an alias use of a node of `weight`, refusing it when it goes over a bound.
    fn charge_alias(&mut self, weight: Weight, span: Span) -> Result<(), ParseIssue> {
        self.aliases += 1;
        self.copied.add(weight);
        let over = if self.aliases > MAX_ALIASES {
            Some(format!("more than {MAX_ALIASES} alias uses"))
        } else if self.copied.nodes > MAX_ALIAS_NODES {
            Some(format!(
                "aliases that copy more than {MAX_ALIAS_NODES} nodes"
            ))
        } else if self.copied.bytes > MAX_ALIAS_BYTES {
            Some(format!(
                "aliases that copy more than {} MiB of text",
                MAX_ALIAS_BYTES >> 20
            ))
        } else {
            None
        };
        match over {
            None => Ok(()),
            Some(what) => Err(ParseIssue::Limit {
                span,
                message: format!("the file has {what}; it was not read further"),
                help: "each alias `*name` copies its anchored value with everything in it, and nested aliases multiply: write the values out, or anchor smaller values".into(),
            }),
        }
    }

    fn on_event(&mut self, ev: Event, mark: &Marker) -> Result<(), ParseIssue> {
        let start = marker_offset(self.file, mark);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == TScalarStyle::Plain;
                let len = match style {
                    TScalarStyle::Plain => text.len(),
                    TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => text.len() + 2,
                    TScalarStyle::Literal | TScalarStyle::Folded => 1,
                };
                let end = (start + len.max(1)).min(self.file.text.len().max(start));
                let weight = Weight {
                    nodes: 1,
                    bytes: text.len(),
                };
                let node = Node {
                    kind: NodeKind::Scalar(Scalar { text, plain }),
                    span: Span::new(start, end),
                    flow: self.in_flow(),
                };
                self.push_node(node, anchor, weight);
            }
            Event::SequenceStart(anchor, _) => {
                let span = Span::new(start, start + 1);
                self.open(
                    Frame::Seq {
                        span,
                        anchor,
                        flow: self.flow_at(start),
                        items: Vec::new(),
                        weight: Weight::default(),
                    },
                    span,
                )?;
            }
            Event::MappingStart(anchor, _) => {
                let span = Span::new(start, start + 1);
                self.open(
                    Frame::Map {
                        span,
                        anchor,
                        flow: self.flow_at(start),
                        entries: Vec::new(),
                        keys: HashMap::new(),
                        key: None,
                        weight: Weight::default(),
                    },
                    span,
                )?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor, mut weight) = match self.stack.pop() {
                    Some(Frame::Seq {
                        span,
                        anchor,
                        flow,
                        items,
                        weight,
                    }) => (
                        Node {
                            kind: NodeKind::Seq(items),
                            span,
                            flow,
                        },
                        anchor,
                        weight,
                    ),
                    Some(Frame::Map {
                        span,
                        anchor,
                        flow,
                        entries,
                        weight,
                        ..
                    }) => {
                        // A mapping is located at its first key (the start event's mark may lag).
                        let span = entries.first().map(|(k, _)| k.span).unwrap_or(span);
                        (
                            Node {
                                kind: NodeKind::Map(entries),
                                span,
                                flow,
                            },
                            anchor,
                            weight,
                        )
                    }
                    None => return Ok(()),
                };
                weight.nodes = weight.nodes.saturating_add(1);
                self.push_node(node, anchor, weight);
            }
            Event::Alias(id) => {
                let span = self.alias_span(start);
                let Some((_, weight)) = self.anchors.get(&id) else {
                    return Err(ParseIssue::Syntax {
                        span,
                        message: "alias to an anchor that encloses it or is in another document"
                            .into(),
                    });
                };
                self.charge_alias(*weight, span)?;
                let (node, weight) = self.anchors[&id].clone();
                self.push_node(node, 0, weight);
            }
            Event::DocumentStart => self.anchors.clear(),
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        Ok(())
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

    fn billion_laughs(levels: usize) -> String {
        let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..levels {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        text
    }

    #[test]
    fn alias_bomb_is_refused_at_the_alias_that_goes_over() {
        let text = billion_laughs(10); // 10^10 nodes if expanded
        let started = std::time::Instant::now();
        let (docs, issues) = parse_str(&text);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(docs.is_empty());
        let [ParseIssue::Limit { span, message, .. }] = &issues[..] else {
            panic!("{issues:?}");
        };
        assert!(message.contains("copy more than 100000 nodes"), "{message}");
        assert!(text[span.start..span.end].starts_with("*a"), "{span:?}");
        let file = SourceFile::new("t.yaml".into(), text.clone());
        assert_eq!(file.line_col(span.start).0, 5); // the aliases of line 5 copy 10^5 nodes
    }

    #[test]
    fn many_alias_uses_are_refused() {
        let mut text = String::from("base: &b x\nlist:\n");
        for _ in 0..=MAX_ALIASES {
            text.push_str("  - *b\n");
        }
        let (_, issues) = parse_str(&text);
        assert!(
            matches!(&issues[..], [ParseIssue::Limit { message, .. }] if message.contains("alias uses")),
            "{issues:?}"
        );
    }

    #[test]
    fn large_anchored_text_copied_many_times_is_refused() {
        let text = format!(
            "big: &b \"{}\"\nl: [{}]\n",
            "x".repeat(1 << 20),
            ["*b"; 5].join(", ")
        );
        let (_, issues) = parse_str(&text);
        assert!(
            matches!(&issues[..], [ParseIssue::Limit { message, .. }] if message.contains("MiB of text")),
            "{issues:?}"
        );
    }

    #[test]
    fn ordinary_aliases_within_the_bounds_are_read() {
        // Positive control: a shared mapping used by 500 items, and nested aliases of 4 levels.
        let mut text = String::from("defaults: &d {push: maintainer, merge: developer}\nitems:\n");
        for _ in 0..500 {
            text.push_str("  - *d\n");
        }
        let (docs, issues) = parse_str(&text);
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(docs[0].get("items").unwrap().items().len(), 500);
        let (docs, issues) = parse_str(&billion_laughs(4)); // 10^4 nodes
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(docs[0].get("a3").unwrap().items().len(), 10);
    }

    #[test]
    fn nesting_is_bounded_without_exhausting_the_stack() {
        let deep = "- ".repeat(100_000) + "x\n";
        let (_, issues) = parse_str(&deep);
        assert!(
            matches!(&issues[..], [ParseIssue::Limit { message, .. }] if message.contains("nested deeper")),
            "{issues:?}"
        );
        let ok = "- ".repeat(MAX_DEPTH) + "x\n";
        let (docs, issues) = parse_str(&ok);
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(docs.len(), 1);
    }

    #[test]
    fn an_alias_cannot_reach_into_another_document() {
        let (_, issues) = parse_str("a: &x 1\n---\nb: *x\n");
        assert!(!issues.is_empty());
    }

    #[test]
    fn many_keys_in_one_mapping_are_checked_for_duplicates_in_linear_time() {
        let mut text = String::new();
        for i in 0..200_000 {
            text.push_str(&format!("k{i}: 1\n"));
        }
        text.push_str("k7: 2\n");
        let started = std::time::Instant::now();
        let (docs, issues) = parse_str(&text);
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        assert!(matches!(&issues[..], [ParseIssue::DuplicateKey { key, .. }] if key == "k7"));
        assert_eq!(docs[0].get("k7").unwrap().as_str(), Some("1"));
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
