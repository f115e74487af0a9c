//! Orders steps by their declared dependencies.

use std::collections::{BTreeSet, HashMap};

/// A dependency that cannot be satisfied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// A node waits for a node that does not exist.
    #[error("{node} waits for {missing}, which is not a step")]
    Missing {
        /// The waiting node.
        node: String,
        /// The id it names.
        missing: String,
    },
    /// Nodes wait for each other.
    #[error("steps wait for each other: {}", cycle.join(" -> "))]
    Cycle {
        /// The ids around the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// Two nodes share an id.
    #[error("two steps have the id {0}")]
    Duplicate(String),
}

/// Sorts nodes so that each comes after everything it depends on. Among nodes that are ready at the same
/// time, the one given first comes first, so the order is stable and readable.
///
/// `nodes` are `(id, dependencies)`; the result holds indexes into `nodes`.
pub fn topological_order(nodes: &[(&str, Vec<&str>)]) -> Result<Vec<usize>, OrderError> {
    let mut index_of: HashMap<&str, usize> = HashMap::with_capacity(nodes.len());
    for (index, (id, _)) in nodes.iter().enumerate() {
        if index_of.insert(id, index).is_some() {
            return Err(OrderError::Duplicate((*id).to_string()));
        }
    }
    let mut waiting_on = vec![0usize; nodes.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (index, (id, deps)) in nodes.iter().enumerate() {
        let unique: BTreeSet<&str> = deps.iter().copied().collect();
        for dep in unique {
            let &dep_index = index_of
                .get(dep)
                .ok_or_else(|| OrderError::Missing { node: (*id).to_string(), missing: dep.to_string() })?;
            waiting_on[index] += 1;
            dependents[dep_index].push(index);
        }
    }
    let mut ready: BTreeSet<usize> = (0..nodes.len()).filter(|&i| waiting_on[i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(next) = ready.pop_first() {
        order.push(next);
        for &dependent in &dependents[next] {
            waiting_on[dependent] -= 1;
            if waiting_on[dependent] == 0 {
                ready.insert(dependent);
            }
        }
    }
    if order.len() < nodes.len() {
        return Err(OrderError::Cycle { cycle: find_cycle(nodes, &index_of, &waiting_on) });
    }
    Ok(order)
}

/// Follows unfinished dependencies from an unfinished node until one repeats.
fn find_cycle(nodes: &[(&str, Vec<&str>)], index_of: &HashMap<&str, usize>, waiting_on: &[usize]) -> Vec<String> {
    let Some(mut current) = (0..nodes.len()).find(|&i| waiting_on[i] > 0) else { return Vec::new() };
    let mut path: Vec<usize> = Vec::new();
    loop {
        if let Some(position) = path.iter().position(|&p| p == current) {
            let mut cycle: Vec<String> = path[position..].iter().map(|&i| nodes[i].0.to_string()).collect();
            cycle.push(nodes[current].0.to_string());
            return cycle;
        }
        path.push(current);
        let next = nodes[current].1.iter().filter_map(|d| index_of.get(d).copied()).find(|&d| waiting_on[d] > 0);
        match next {
            Some(next) => current = next,
            None => return path.iter().map(|&i| nodes[i].0.to_string()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_given_order_among_ready_nodes() {
        let nodes = vec![("mount", vec!["mkfs"]), ("wipe", vec![]), ("mkfs", vec!["gpt"]), ("gpt", vec!["wipe"])];
        let order = topological_order(&nodes).expect("no cycle");
        let ids: Vec<&str> = order.iter().map(|&i| nodes[i].0).collect();
        assert_eq!(ids, ["wipe", "gpt", "mkfs", "mount"]);
    }

    #[test]
    fn reports_cycles_by_name() {
        let nodes = vec![("a", vec!["c"]), ("b", vec!["a"]), ("c", vec!["b"]), ("d", vec![])];
        match topological_order(&nodes) {
            Err(OrderError::Cycle { cycle }) => {
                assert_eq!(cycle.first(), cycle.last());
                assert_eq!(cycle.len(), 4);
                for id in ["a", "b", "c"] {
                    assert!(cycle.iter().any(|c| c == id), "{cycle:?}");
                }
            }
            other => panic!("expected a cycle, got {other:?}"),
        }
    }

    #[test]
    fn reports_unknown_dependencies() {
        let nodes = vec![("a", vec!["nope"])];
        assert_eq!(topological_order(&nodes), Err(OrderError::Missing { node: "a".into(), missing: "nope".into() }));
    }
}
