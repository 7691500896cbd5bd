//! `ref:` resolution: indexing the export tree by path and following every chain of
//! references to the node it ends at, with the errors for dangling targets, cycles and
//! references to an ancestor.

use std::collections::{HashMap, HashSet};

use super::model::{DriverNode, ExportEntry, ExporterConfig};
use crate::error::ConfigError;

impl ExporterConfig {
    /// Resolves a proxy chain to the node it finally names (`None` when the chain leads
    /// nowhere or in a circle). To resolve many paths, use [`ExporterConfig::index`].
    pub fn resolve(&self, path: &str) -> Option<(String, &ExportEntry)> {
        let mut current = path.to_owned();
        let mut seen = HashSet::new();
        loop {
            let e = self.find(&current)?;
            match &e.node {
                DriverNode::Proxy { target, .. } => {
                    if !seen.insert(current) {
                        return None;
                    }
                    current = target.clone();
                }
                _ => return Some((current, e)),
            }
        }
    }

    /// Indexes the export tree by path and resolves every `ref:` to the node its chain ends
    /// at, in time linear in the size of the tree. The error is the first problem found in
    /// pre-order: a target that does not exist, a cycle, or a reference to its own ancestor.
    pub fn index(&self) -> Result<ExportIndex<'_>, ConfigError> {
        ExportIndex::new(self)
    }

    pub(super) fn check_refs(&self) -> Result<(), ConfigError> {
        self.index().map(|_| ())
    }
}

/// The nodes of an export tree by dotted path, with every `ref:` resolved (see
/// [`ExporterConfig::index`]).
#[derive(Debug)]
pub struct ExportIndex<'a> {
    nodes: Vec<(String, &'a ExportEntry)>,
    by_path: HashMap<String, usize>,
    /// For a proxy, the index of the node its chain of references ends at.
    targets: Vec<Option<usize>>,
}

/// How far the resolution of one proxy has got.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RefState {
    Unvisited,
    OnChain,
    Done,
}

impl<'a> ExportIndex<'a> {
    fn new(cfg: &'a ExporterConfig) -> Result<Self, ConfigError> {
        let nodes = cfg.nodes();
        let by_path: HashMap<String, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, (p, _))| (p.clone(), i))
            .collect();
        let proxy_target = |i: usize| match &nodes[i].1.node {
            DriverNode::Proxy { target, target_at } => Some((target, target_at)),
            _ => None,
        };
        let mut state = vec![RefState::Unvisited; nodes.len()];
        let mut targets: Vec<Option<usize>> = vec![None; nodes.len()];
        for start in 0..nodes.len() {
            let Some(first) = proxy_target(start) else {
                continue;
            };
            if state[start] == RefState::Done {
                continue;
            }
            // Follow the chain start -> ... until a driver, or a proxy resolved before.
            let mut chain = vec![start];
            state[start] = RefState::OnChain;
            let (mut last, mut link) = (start, first);
            let end = loop {
                let (target, target_at) = link;
                let Some(&next) = by_path.get(target.as_str()) else {
                    let mut message = format!(
                        "`{}` references nonexistent driver `{target}`",
                        nodes[last].0
                    );
                    if last != start {
                        message.push_str(&format!(
                            " (the end of the chain of references {})",
                            chain_text(chain.iter().map(|&i| nodes[i].0.as_str()))
                        ));
                    }
                    message.push_str(&format!(" (drivers: {})", known_drivers(&nodes)));
                    return Err(ConfigError::Invalid {
                        at: target_at.clone(),
                        message,
                    });
                };
                let Some(next_link) = proxy_target(next) else {
                    break next;
                };
                match state[next] {
                    RefState::Done => break targets[next].unwrap_or(next),
                    RefState::Unvisited => {
                        state[next] = RefState::OnChain;
                        chain.push(next);
                        (last, link) = (next, next_link);
                    }
                    RefState::OnChain => {
                        let names = chain
                            .iter()
                            .map(|&i| nodes[i].0.as_str())
                            .chain([nodes[next].0.as_str()]);
                        let how = if next == start {
                            "is part of"
                        } else {
                            "leads into"
                        };
                        return Err(ConfigError::Invalid {
                            at: first.1.clone(),
                            message: format!(
                                "`{}` {how} a reference cycle: {}",
                                nodes[start].0,
                                chain_text(names)
                            ),
                        });
                    }
                }
            };
            // Only a driver or composite can be an ancestor (proxies have no children), so
            // only the end of the chain needs checking against each proxy on it.
            let end_prefix = format!("{}.", nodes[end].0);
            for &i in &chain {
                if nodes[i].0.starts_with(&end_prefix) {
                    return Err(ConfigError::Invalid {
                        at: proxy_target(i).map_or(first.1, |(_, at)| at).clone(),
                        message: format!(
                            "`{}` references its own ancestor `{}`",
                            nodes[i].0, nodes[end].0
                        ),
                    });
                }
                state[i] = RefState::Done;
                targets[i] = Some(end);
            }
        }
        Ok(ExportIndex {
            nodes,
            by_path,
            targets,
        })
    }

    /// Every node with its dotted path, in pre-order.
    pub fn nodes(&self) -> &[(String, &'a ExportEntry)] {
        &self.nodes
    }

    /// The node at a dotted path.
    pub fn get(&self, path: &str) -> Option<&'a ExportEntry> {
        self.by_path.get(path).map(|&i| self.nodes[i].1)
    }

    /// The node a path finally names: a proxy's resolved target, any other node itself.
    pub fn resolve(&self, path: &str) -> Option<(&str, &'a ExportEntry)> {
        let i = *self.by_path.get(path)?;
        let end = match self.nodes[i].1.node {
            DriverNode::Proxy { .. } => self.targets[i]?,
            _ => i,
        };
        Some((self.nodes[end].0.as_str(), self.nodes[end].1))
    }
}

/// A chain of paths for a message, `a -> b -> c`, shortened in the middle when long.
fn chain_text<'s>(names: impl Iterator<Item = &'s str>) -> String {
    const SHOWN: usize = 4;
    let names: Vec<&str> = names.collect();
    if names.len() <= 3 * SHOWN {
        return names.join(" -> ");
    }
    format!(
        "{} -> ... ({} more) ... -> {}",
        names[..SHOWN].join(" -> "),
        names.len() - 2 * SHOWN,
        names[names.len() - SHOWN..].join(" -> ")
    )
}

/// The drivers of a tree for a message, shortened when there are many.
fn known_drivers(nodes: &[(String, &ExportEntry)]) -> String {
    const SHOWN: usize = 20;
    let known: Vec<&str> = nodes
        .iter()
        .filter(|(_, e)| !matches!(e.node, DriverNode::Proxy { .. }))
        .map(|(p, _)| p.as_str())
        .collect();
    match known.len() {
        0 => "none".to_owned(),
        n if n <= SHOWN => known.join(", "),
        n => format!("{}, and {} more", known[..SHOWN].join(", "), n - SHOWN),
    }
}
