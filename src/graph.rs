//! The dependency graph of a desired state (petgraph).
//!
//! Owns: one node per resource address, an edge for every dependency (`a → b`: a depends on
//! b), cycle detection with the full path, apply order (dependencies first, in waves of
//! independent nodes) and delete order (the reverse). Pure: takes a [`DesiredState`], no I/O.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;

use crate::address::Address;
use crate::spec::DesiredState;

/// Why one resource depends on another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// A project owns its members, protected branches and variables.
    Owner,
    /// A member refers to a user.
    User,
    /// A value or container secret comes from Secrets Manager (cross-system for GitLab).
    Secret,
    /// A task definition runs an ECR image.
    Image,
    /// A service runs a task definition.
    TaskDefinition,
    /// A promoted environment's service follows the same service in its source environment.
    Promotion,
}

#[derive(Debug)]
pub struct Graph {
    graph: DiGraph<Address, EdgeKind>,
    index: BTreeMap<Address, NodeIndex>,
}

/// A dependency cycle, as a path that ends where it starts.
#[derive(Debug, thiserror::Error)]
#[error("dependency cycle: {}", path.iter().map(ToString::to_string).collect::<Vec<_>>().join(" → "))]
pub struct Cycle {
    pub path: Vec<Address>,
}

#[derive(Debug)]
pub struct EdgeView<'a> {
    pub from: &'a Address,
    pub to: &'a Address,
    pub kind: EdgeKind,
}

impl Graph {
    /// Builds the graph; fails on a cycle.
    pub fn build(state: &DesiredState) -> Result<Self, Cycle> {
        let mut edges: BTreeSet<(Address, Address, EdgeKind)> = BTreeSet::new();
        let mut nodes: BTreeSet<Address> = state.origins.keys().cloned().collect();
        nodes.extend(state.references.keys().cloned());

        for p in &state.projects {
            let project = p.spec.full_path().to_lowercase();
            let owner = Address::Project {
                path: project.clone(),
            };
            for m in &p.spec.members.items {
                let member = Address::Member {
                    project: project.clone(),
                    user: m.user.to_lowercase(),
                };
                edges.insert((member.clone(), owner.clone(), EdgeKind::Owner));
                let user = Address::User {
                    username: m.user.to_lowercase(),
                };
                if nodes.contains(&user) {
                    edges.insert((member, user, EdgeKind::User));
                }
            }
            for b in &p.spec.protected_branches.items {
                let branch = Address::ProtectedBranch {
                    project: project.clone(),
                    branch: b.name.clone(),
                };
                edges.insert((branch, owner.clone(), EdgeKind::Owner));
            }
            for v in &p.spec.variables.items {
                let var = Address::Variable {
                    project: project.clone(),
                    key: v.key.clone(),
                    scope: v.environment_scope.clone(),
                };
                edges.insert((var.clone(), owner.clone(), EdgeKind::Owner));
                if let Some(from) = &v.from {
                    edges.insert((
                        var,
                        Address::Secret {
                            name: from.secret.clone(),
                        },
                        EdgeKind::Secret,
                    ));
                }
            }
        }
        for s in &state.services {
            let env = &s.spec.environment;
            let service = Address::Service {
                env: env.clone(),
                service: s.spec.name.clone(),
            };
            let td = Address::TaskDefinition {
                env: env.clone(),
                service: s.spec.name.clone(),
            };
            edges.insert((service.clone(), td.clone(), EdgeKind::TaskDefinition));
            for c in &s.spec.task_definition.containers {
                edges.insert((
                    td.clone(),
                    Address::EcrImage {
                        image: c.image.reference(),
                    },
                    EdgeKind::Image,
                ));
                for source in c.secrets.values() {
                    edges.insert((
                        td.clone(),
                        Address::Secret {
                            name: source.secret.clone(),
                        },
                        EdgeKind::Secret,
                    ));
                }
            }
            if let Some(from) = state
                .config
                .environments
                .get(env)
                .and_then(|e| e.promote_from.as_ref())
            {
                let upstream = Address::Service {
                    env: from.clone(),
                    service: s.spec.name.clone(),
                };
                if nodes.contains(&upstream) {
                    edges.insert((service, upstream, EdgeKind::Promotion));
                }
            }
        }
        Self::from_parts(nodes, edges)
    }

    /// Builds a graph from nodes and `(dependent, dependency, kind)` edges; fails on a cycle.
    pub fn from_parts(
        nodes: impl IntoIterator<Item = Address>,
        edges: impl IntoIterator<Item = (Address, Address, EdgeKind)>,
    ) -> Result<Self, Cycle> {
        let mut graph = DiGraph::new();
        let mut index = BTreeMap::new();
        let mut add = |graph: &mut DiGraph<Address, EdgeKind>, a: Address| {
            *index.entry(a.clone()).or_insert_with(|| graph.add_node(a))
        };
        let nodes: BTreeSet<Address> = nodes.into_iter().collect();
        for n in nodes {
            add(&mut graph, n);
        }
        let edges: BTreeSet<(Address, Address, EdgeKind)> = edges.into_iter().collect();
        for (from, to, kind) in edges {
            let a = add(&mut graph, from);
            let b = add(&mut graph, to);
            graph.add_edge(a, b, kind);
        }
        let g = Graph { graph, index };
        match g.find_cycle() {
            Some(path) => Err(Cycle { path }),
            None => Ok(g),
        }
    }

    fn find_cycle(&self) -> Option<Vec<Address>> {
        let sccs = petgraph::algo::tarjan_scc(&self.graph);
        let scc = sccs
            .into_iter()
            .find(|scc| scc.len() > 1 || self.graph.contains_edge(scc[0], scc[0]))?;
        let members: BTreeSet<NodeIndex> = scc.iter().copied().collect();
        let start = *scc.iter().min_by_key(|i| &self.graph[**i])?;
        // Walk inside the component until a node repeats: that is a cycle.
        let mut path = vec![start];
        let mut seen = BTreeMap::from([(start, 0usize)]);
        let mut current = start;
        loop {
            let next = self
                .graph
                .neighbors_directed(current, Direction::Outgoing)
                .filter(|n| members.contains(n))
                .min_by_key(|n| &self.graph[*n])?;
            if let Some(&at) = seen.get(&next) {
                let mut cycle: Vec<Address> =
                    path[at..].iter().map(|i| self.graph[*i].clone()).collect();
                cycle.push(self.graph[next].clone());
                return Some(cycle);
            }
            seen.insert(next, path.len());
            path.push(next);
            current = next;
        }
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    pub fn addresses(&self) -> impl Iterator<Item = &Address> {
        self.index.keys()
    }

    pub fn edges(&self) -> Vec<EdgeView<'_>> {
        let mut edges: Vec<_> = self
            .graph
            .edge_indices()
            .map(|e| {
                let (a, b) = self.graph.edge_endpoints(e).expect("edge exists");
                EdgeView {
                    from: &self.graph[a],
                    to: &self.graph[b],
                    kind: self.graph[e],
                }
            })
            .collect();
        edges.sort_by(|x, y| (x.from, x.to, x.kind).cmp(&(y.from, y.to, y.kind)));
        edges
    }

    /// Direct dependencies of `address`.
    pub fn dependencies(&self, address: &Address) -> Vec<&Address> {
        self.neighbors(address, Direction::Outgoing)
    }

    /// Direct dependents of `address`.
    pub fn dependents(&self, address: &Address) -> Vec<&Address> {
        self.neighbors(address, Direction::Incoming)
    }

    fn neighbors(&self, address: &Address, dir: Direction) -> Vec<&Address> {
        let Some(&i) = self.index.get(address) else {
            return Vec::new();
        };
        let mut v: Vec<_> = self
            .graph
            .neighbors_directed(i, dir)
            .map(|n| &self.graph[n])
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Waves of addresses: every dependency of a node is in an earlier wave; nodes of one wave
    /// are independent and may be applied concurrently. Sorted inside a wave.
    pub fn apply_order(&self) -> Vec<Vec<&Address>> {
        let mut remaining: BTreeMap<NodeIndex, usize> = self
            .graph
            .node_indices()
            .map(|i| {
                (
                    i,
                    self.graph
                        .neighbors_directed(i, Direction::Outgoing)
                        .collect::<BTreeSet<_>>()
                        .len(),
                )
            })
            .collect();
        let mut waves = Vec::new();
        let mut ready: Vec<NodeIndex> = remaining
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(i, _)| *i)
            .collect();
        while !ready.is_empty() {
            for i in &ready {
                remaining.remove(i);
            }
            let mut next = BTreeSet::new();
            for i in &ready {
                for dependent in self
                    .graph
                    .neighbors_directed(*i, Direction::Incoming)
                    .collect::<BTreeSet<_>>()
                {
                    if let Some(n) = remaining.get_mut(&dependent) {
                        *n -= 1;
                        if *n == 0 {
                            next.insert(dependent);
                        }
                    }
                }
            }
            let mut wave: Vec<&Address> = ready.iter().map(|i| &self.graph[*i]).collect();
            wave.sort();
            waves.push(wave);
            ready = next.into_iter().collect();
        }
        waves
    }

    /// Waves for deleting: dependents before what they depend on.
    pub fn delete_order(&self) -> Vec<Vec<&Address>> {
        let mut waves = self.apply_order();
        waves.reverse();
        waves
    }

    /// Graphviz DOT, deterministic. Cross-system edges are blue, promotion edges red and dashed.
    pub fn to_dot(&self) -> String {
        let mut out = String::from(
            "digraph reconcile {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
        );
        for address in self.index.keys() {
            let color = if address.system() == "gitlab" {
                "#fc6d26"
            } else {
                "#ff9900"
            };
            out.push_str(&format!("  \"{address}\" [color=\"{color}\"];\n"));
        }
        for e in self.edges() {
            let style = match e.kind {
                EdgeKind::Promotion => {
                    " [label=\"promotion\", color=red, style=dashed]".to_string()
                }
                _ if e.from.system() != e.to.system() => {
                    format!(" [label=\"{}\", color=blue]", kind_label(e.kind))
                }
                _ => format!(" [label=\"{}\"]", kind_label(e.kind)),
            };
            out.push_str(&format!("  \"{}\" -> \"{}\"{style};\n", e.from, e.to));
        }
        out.push_str("}\n");
        out
    }

    /// JSON: nodes, edges, apply order.
    pub fn to_json(&self) -> serde_json::Value {
        let edges: Vec<_> = self
            .edges()
            .iter()
            .map(|e| serde_json::json!({"from": e.from.to_string(), "to": e.to.to_string(), "kind": e.kind}))
            .collect();
        let waves: Vec<Vec<String>> = self
            .apply_order()
            .iter()
            .map(|w| w.iter().map(ToString::to_string).collect())
            .collect();
        serde_json::json!({
            "nodes": self.index.keys().map(ToString::to_string).collect::<Vec<_>>(),
            "edges": edges,
            "apply_order": waves,
        })
    }
}

fn kind_label(kind: EdgeKind) -> &'static str {
    match kind {
        EdgeKind::Owner => "owner",
        EdgeKind::User => "user",
        EdgeKind::Secret => "secret",
        EdgeKind::Image => "image",
        EdgeKind::TaskDefinition => "task definition",
        EdgeKind::Promotion => "promotion",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn user(i: usize) -> Address {
        Address::User {
            username: format!("u{i:03}"),
        }
    }

    #[test]
    fn cycle_reports_full_path() {
        let a = Address::Service {
            env: "a".into(),
            service: "x".into(),
        };
        let b = Address::Service {
            env: "b".into(),
            service: "x".into(),
        };
        let err = Graph::from_parts(
            [a.clone(), b.clone()],
            [
                (a.clone(), b.clone(), EdgeKind::Promotion),
                (b.clone(), a.clone(), EdgeKind::Promotion),
            ],
        )
        .unwrap_err();
        assert_eq!(err.path, vec![a.clone(), b, a]);
    }

    proptest! {
        /// Every edge goes from a later wave to an earlier one, and every node is in one wave.
        #[test]
        fn apply_order_respects_every_edge(n in 1usize..40, raw_edges in proptest::collection::vec((0usize..40, 0usize..40), 0..120)) {
            // Only edges from a higher to a lower index: acyclic by construction.
            let edges: Vec<_> = raw_edges.into_iter()
                .filter(|(a, b)| a < &n && b < a)
                .map(|(a, b)| (user(a), user(b), EdgeKind::User))
                .collect();
            let g = Graph::from_parts((0..n).map(user), edges.clone()).unwrap();
            let order = g.apply_order();
            let wave_of: BTreeMap<&Address, usize> = order.iter().enumerate()
                .flat_map(|(w, wave)| wave.iter().map(move |a| (*a, w))).collect();
            prop_assert_eq!(wave_of.len(), n);
            for (dependent, dependency, _) in &edges {
                prop_assert!(wave_of[dependency] < wave_of[dependent]);
            }
            let delete = g.delete_order();
            let del_wave: BTreeMap<&Address, usize> = delete.iter().enumerate()
                .flat_map(|(w, wave)| wave.iter().map(move |a| (*a, w))).collect();
            for (dependent, dependency, _) in &edges {
                prop_assert!(del_wave[dependent] < del_wave[dependency]);
            }
        }
    }
}
