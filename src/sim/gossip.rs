//! Who lists whom in `getaddr` answers: a deterministic plan that lets a crawler starting from
//! any answering node reach every node of the simulated network, and a crawler that follows
//! only clear addresses (no proxy) reach every clear node.

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use super::{Network, SimConfig};

/// For each node (by index), the indices of the nodes it lists in answers to `getaddr`.
///
/// 1. Answering nodes, shuffled, form a ring: each lists its next `ring_successors`. The
///    clear ones, in the same order, form a second ring of their own (the same ring when
///    every node is clear).
/// 2. Each non-answering node is listed by two dependable answering nodes (`Good`, `Slow`,
///    `NoServices`, `AltPort`), clear ones for a clear node, taken round-robin; by any
///    answering node if none is dependable.
/// 3. Each answering list is topped up with distinct random nodes to `addrs_per_answer`.
pub(crate) fn plan(config: &SimConfig) -> Vec<Vec<usize>> {
    let n = config.nodes.len();
    let mut lists = Lists::new(n);
    let mut rng = StdRng::seed_from_u64(config.gossip_seed);
    let mut ring: Vec<usize> = (0..n)
        .filter(|&i| config.nodes[i].behaviour.answers_getaddr())
        .collect();
    if ring.is_empty() {
        return lists.lists;
    }
    ring.shuffle(&mut rng);
    link_ring(&mut lists, &ring, config.ring_successors);
    let clear: Vec<usize> = ring
        .iter()
        .copied()
        .filter(|&i| config.nodes[i].network == Network::Clear)
        .collect();
    link_ring(&mut lists, &clear, config.ring_successors);
    vouch_for_the_others(&mut lists, &ring, config);
    top_up(
        &mut lists,
        &ring,
        config.addrs_per_answer.min(n - 1),
        &mut rng,
    );
    lists.lists
}

/// Gossip lists under construction: a list names a node at most once, and never its owner.
struct Lists {
    lists: Vec<Vec<usize>>,
    members: Vec<HashSet<usize>>,
}

impl Lists {
    fn new(n: usize) -> Self {
        Self {
            lists: vec![Vec::new(); n],
            members: vec![HashSet::new(); n],
        }
    }

    fn add(&mut self, owner: usize, listed: usize) {
        if owner != listed && self.members[owner].insert(listed) {
            self.lists[owner].push(listed);
        }
    }
}

/// Step 1: each node of `ring` lists its next `successors`.
fn link_ring(lists: &mut Lists, ring: &[usize], successors: usize) {
    for (pos, &owner) in ring.iter().enumerate() {
        for step in 1..=successors.min(ring.len().saturating_sub(1)) {
            lists.add(owner, ring[(pos + step) % ring.len()]);
        }
    }
}

/// Step 2: lists each node that does not answer `getaddr` in two lists of the ring,
/// dependable nodes' if there are any (clear ones for a clear node, if there are any).
fn vouch_for_the_others(lists: &mut Lists, ring: &[usize], config: &SimConfig) {
    let nodes = &config.nodes;
    let dependable: Vec<usize> = ring
        .iter()
        .copied()
        .filter(|&i| nodes[i].behaviour.is_dependable())
        .collect();
    let clear: Vec<usize> = dependable
        .iter()
        .copied()
        .filter(|&i| nodes[i].network == Network::Clear)
        .collect();
    let pick = |listed: usize| -> &[usize] {
        if nodes[listed].network == Network::Clear && !clear.is_empty() {
            &clear
        } else if dependable.is_empty() {
            ring
        } else {
            &dependable
        }
    };
    let others = (0..nodes.len()).filter(|&i| !nodes[i].behaviour.answers_getaddr());
    for (k, listed) in others.enumerate() {
        let vouchers = pick(listed);
        lists.add(vouchers[k % vouchers.len()], listed);
        lists.add(vouchers[(k + vouchers.len() / 2) % vouchers.len()], listed);
    }
}

/// Step 3: tops up each list of the ring with random nodes to `target` entries.
fn top_up(lists: &mut Lists, ring: &[usize], target: usize, rng: &mut StdRng) {
    let n = lists.lists.len();
    for &owner in ring {
        // Random draws with rejection: bounded so tiny networks terminate.
        let mut attempts = 0;
        while lists.lists[owner].len() < target && attempts < 20 * target {
            lists.add(owner, rng.random_range(0..n));
            attempts += 1;
        }
    }
}
