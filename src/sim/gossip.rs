//! Who lists whom in `getaddr` answers: a deterministic plan that lets a crawler starting from
//! any answering node reach every node of the simulated network.

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use super::SimConfig;

/// For each node (by index), the indices of the nodes it lists in answers to `getaddr`.
///
/// 1. Answering nodes, shuffled, form a ring: each lists its next `ring_successors`.
/// 2. Each non-answering node is listed by two dependable answering nodes (`Good`, `Slow`,
///    `NoServices`, `AltPort`), taken round-robin; by any answering node if none is
///    dependable.
/// 3. Each answering list is topped up with distinct random nodes to `addrs_per_answer`.
pub(crate) fn plan(config: &SimConfig) -> Vec<Vec<usize>> {
    let n = config.nodes.len();
    let mut lists: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut rng = StdRng::seed_from_u64(config.gossip_seed);
    let mut ring: Vec<usize> = (0..n)
        .filter(|&i| config.nodes[i].behaviour.answers_getaddr())
        .collect();
    if ring.is_empty() {
        return lists;
    }
    ring.shuffle(&mut rng);
    let mut members: Vec<HashSet<usize>> = vec![HashSet::new(); n];
    let mut add = |lists: &mut Vec<Vec<usize>>, owner: usize, listed: usize| {
        if owner != listed && members[owner].insert(listed) {
            lists[owner].push(listed);
        }
    };
    for (pos, &owner) in ring.iter().enumerate() {
        for step in 1..=config.ring_successors.min(ring.len() - 1) {
            add(&mut lists, owner, ring[(pos + step) % ring.len()]);
        }
    }
    let dependable: Vec<usize> = ring
        .iter()
        .copied()
        .filter(|&i| config.nodes[i].behaviour.is_dependable())
        .collect();
    let vouchers = if dependable.is_empty() {
        &ring
    } else {
        &dependable
    };
    let others = (0..n).filter(|&i| !config.nodes[i].behaviour.answers_getaddr());
    for (k, listed) in others.enumerate() {
        add(&mut lists, vouchers[k % vouchers.len()], listed);
        add(
            &mut lists,
            vouchers[(k + vouchers.len() / 2) % vouchers.len()],
            listed,
        );
    }
    let target = config.addrs_per_answer.min(n - 1);
    for &owner in &ring {
        // Random draws with rejection: bounded so tiny networks terminate.
        let mut attempts = 0;
        while lists[owner].len() < target && attempts < 20 * target {
            add(&mut lists, owner, rng.random_range(0..n));
            attempts += 1;
        }
    }
    lists
}
