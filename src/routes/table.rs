//! The route trie: patterns in, one lookup per request out.
//!
//! Precedence is decided segment by segment from the left: a static segment beats
//! `[param]`, which beats `[...catch]`, which beats `[[...optional]]`. When the more
//! specific branch finds nothing further down, the next one is tried, so
//! `users/new.sh` and `users/[id]/edit.sh` both answer. Children live in ordered maps,
//! so the result never depends on the order files were found.

use std::collections::BTreeMap;

use super::pattern::Segment;

/// What a pattern leads to: one function, or several files that claim it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    One(usize),
    Conflict(Vec<usize>),
}

impl Endpoint {
    fn add(&mut self, id: usize) {
        match self {
            Endpoint::One(existing) if *existing == id => {}
            Endpoint::One(existing) => *self = Endpoint::Conflict(vec![*existing, id]),
            Endpoint::Conflict(ids) if !ids.contains(&id) => ids.push(id),
            Endpoint::Conflict(_) => {}
        }
    }
}

/// A successful lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub endpoint: Endpoint,
    /// Parameters in pattern order; a catch-all holds its segments.
    pub params: Vec<(String, ParamValue)>,
    /// How many request segments the static and `[param]` parts consumed (the rest,
    /// if any, went to a catch-all): SCRIPT_NAME ends there.
    pub consumed: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default)]
pub struct Trie {
    root: Node,
}

#[derive(Debug, Default)]
struct Node {
    endpoint: Option<Endpoint>,
    statics: BTreeMap<String, Node>,
    params: BTreeMap<String, Node>,
    catch_all: BTreeMap<String, Endpoint>,
    optional: BTreeMap<String, Endpoint>,
}

impl Trie {
    /// Adds `segments` for function `id`. A second function at the same place makes
    /// the endpoint a conflict.
    pub fn insert(&mut self, segments: &[Segment], id: usize) {
        let mut node = &mut self.root;
        for (index, segment) in segments.iter().enumerate() {
            let last = index + 1 == segments.len();
            match segment {
                Segment::Static(s) => node = node.statics.entry(s.clone()).or_default(),
                Segment::Param(p) => node = node.params.entry(p.clone()).or_default(),
                Segment::CatchAll(p) if last => return add(node.catch_all.entry(p.clone()), id),
                Segment::OptionalCatchAll(p) if last => {
                    return add(node.optional.entry(p.clone()), id);
                }
                // Discovery never builds a catch-all that is not last.
                Segment::CatchAll(_) | Segment::OptionalCatchAll(_) => return,
            }
        }
        match &mut node.endpoint {
            Some(endpoint) => endpoint.add(id),
            None => node.endpoint = Some(Endpoint::One(id)),
        }
    }

    /// The endpoint registered for exactly this pattern, if any.
    pub fn endpoint_at(&self, segments: &[Segment]) -> Option<&Endpoint> {
        let mut node = &self.root;
        for (index, segment) in segments.iter().enumerate() {
            let last = index + 1 == segments.len();
            match segment {
                Segment::Static(s) => node = node.statics.get(s)?,
                Segment::Param(p) => node = node.params.get(p)?,
                Segment::CatchAll(p) if last => return node.catch_all.get(p),
                Segment::OptionalCatchAll(p) if last => return node.optional.get(p),
                Segment::CatchAll(_) | Segment::OptionalCatchAll(_) => return None,
            }
        }
        node.endpoint.as_ref()
    }

    pub fn lookup(&self, segments: &[String]) -> Option<Found> {
        let mut params = Vec::new();
        find(&self.root, segments, 0, &mut params)
    }
}

fn add(entry: std::collections::btree_map::Entry<'_, String, Endpoint>, id: usize) {
    entry
        .and_modify(|endpoint| endpoint.add(id))
        .or_insert(Endpoint::One(id));
}

fn find(
    node: &Node,
    segments: &[String],
    at: usize,
    params: &mut Vec<(String, ParamValue)>,
) -> Option<Found> {
    let found = |endpoint: &Endpoint, params: &Vec<(String, ParamValue)>| Found {
        endpoint: endpoint.clone(),
        params: params.clone(),
        consumed: at,
    };
    let Some(segment) = segments.get(at) else {
        if let Some(endpoint) = &node.endpoint {
            return Some(found(endpoint, params));
        }
        let (name, endpoint) = node.optional.iter().next()?;
        params.push((name.clone(), ParamValue::Many(Vec::new())));
        return Some(found(endpoint, params));
    };
    if let Some(child) = node.statics.get(segment)
        && let Some(hit) = find(child, segments, at + 1, params)
    {
        return Some(hit);
    }
    for (name, child) in &node.params {
        params.push((name.clone(), ParamValue::One(segment.clone())));
        if let Some(hit) = find(child, segments, at + 1, params) {
            return Some(hit);
        }
        params.pop();
    }
    let (name, endpoint) = node
        .catch_all
        .iter()
        .next()
        .or_else(|| node.optional.iter().next())?;
    params.push((name.clone(), ParamValue::Many(segments[at..].to_vec())));
    Some(found(endpoint, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> Vec<Segment> {
        text.split('/')
            .filter(|s| !s.is_empty())
            .map(|s| Segment::parse(s).unwrap())
            .collect()
    }

    fn path(text: &str) -> Vec<String> {
        text.split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    const PATTERNS: &[&str] = &[
        "",                       // 0: index
        "users",                  // 1
        "users/[id]",             // 2
        "users/new",              // 3
        "users/[id]/edit",        // 4
        "docs/[...slug]",         // 5
        "shop/[[...rest]]",       // 6
        "shop/cart",              // 7
        "files/[name]/[...rest]", // 8
        "[...any]",               // 9
    ];

    fn build(order: &[usize]) -> Trie {
        let mut trie = Trie::default();
        for &id in order {
            trie.insert(&pattern(PATTERNS[id]), id);
        }
        trie
    }

    #[test]
    fn precedence_table() {
        /// (url, expected pattern index, expected params, segments before a catch-all)
        type Case = (
            &'static str,
            usize,
            &'static [(&'static str, &'static str)],
            usize,
        );
        let table: &[Case] = &[
            ("/", 0, &[], 0),
            ("/users", 1, &[], 1),
            ("/users/new", 3, &[], 2),
            ("/users/42", 2, &[("id", "42")], 2),
            ("/users/new/edit", 4, &[("id", "new")], 3),
            ("/docs/a/b", 5, &[("slug", "a/b")], 1),
            ("/docs", 9, &[("any", "docs")], 0),
            ("/shop", 6, &[("rest", "")], 1),
            ("/shop/cart", 7, &[], 2),
            ("/shop/x/y", 6, &[("rest", "x/y")], 1),
            ("/files/f/a/b", 8, &[("name", "f"), ("rest", "a/b")], 2),
            ("/users/1/2/3", 9, &[("any", "users/1/2/3")], 0),
        ];
        let orders: [Vec<usize>; 2] = [
            (0..PATTERNS.len()).collect(),
            (0..PATTERNS.len()).rev().collect(),
        ];
        for order in &orders {
            let trie = build(order);
            for (url, want, want_params, consumed) in table {
                let hit = trie
                    .lookup(&path(url))
                    .unwrap_or_else(|| panic!("{url} not found"));
                assert_eq!(hit.endpoint, Endpoint::One(*want), "{url}");
                let params: Vec<(String, String)> = hit
                    .params
                    .iter()
                    .map(|(k, v)| match v {
                        ParamValue::One(s) => (k.clone(), s.clone()),
                        ParamValue::Many(v) => (k.clone(), v.join("/")),
                    })
                    .collect();
                let want_params: Vec<(String, String)> = want_params
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                assert_eq!(params, want_params, "{url}");
                assert_eq!(hit.consumed, *consumed, "{url}");
            }
        }
    }

    #[test]
    fn misses_and_conflicts() {
        let mut trie = Trie::default();
        trie.insert(&pattern("a"), 0);
        trie.insert(&pattern("a"), 1);
        trie.insert(&pattern("b/[...x]"), 2);
        assert_eq!(
            trie.lookup(&path("/a")).unwrap().endpoint,
            Endpoint::Conflict(vec![0, 1])
        );
        assert_eq!(trie.lookup(&path("/b")), None);
        assert_eq!(trie.lookup(&path("/c")), None);
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn segment() -> impl Strategy<Value = Segment> {
            prop_oneof![
                4 => prop_oneof![Just("a"), Just("b"), Just("users"), Just("new"), Just("x.sh")]
                    .prop_map(|s| Segment::Static(s.to_owned())),
                2 => prop_oneof![Just("id"), Just("slug")].prop_map(|s| Segment::Param(s.to_owned())),
                1 => Just(Segment::CatchAll("rest".to_owned())),
                1 => Just(Segment::OptionalCatchAll("all".to_owned())),
            ]
        }

        /// A pattern as discovery would build it: catch-alls only last.
        fn pattern() -> impl Strategy<Value = Vec<Segment>> {
            proptest::collection::vec(segment(), 0..4).prop_map(|segments| {
                let last = segments.len().saturating_sub(1);
                segments
                    .into_iter()
                    .enumerate()
                    .filter(|(index, segment)| !segment.is_catch_all() || *index == last)
                    .map(|(_, segment)| segment)
                    .collect()
            })
        }

        fn request() -> impl Strategy<Value = Vec<String>> {
            proptest::collection::vec(
                prop_oneof![
                    Just("a"),
                    Just("b"),
                    Just("users"),
                    Just("new"),
                    Just("x.sh"),
                    Just("42"),
                    Just("")
                ],
                0..5,
            )
            .prop_map(|v| {
                v.into_iter()
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
        }

        proptest! {
            /// Lookups never panic, and the answer does not depend on the order in
            /// which files were found.
            #[test]
            fn lookup_is_total_and_order_independent(
                patterns in proptest::collection::vec(pattern(), 1..12),
                requests in proptest::collection::vec(request(), 1..12),
                seed in any::<u64>(),
            ) {
                let mut forward = Trie::default();
                for (id, p) in patterns.iter().enumerate() {
                    forward.insert(p, id);
                }
                let mut order: Vec<usize> = (0..patterns.len()).collect();
                let mut state = seed | 1;
                for i in (1..order.len()).rev() {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    order.swap(i, (state % (i as u64 + 1)) as usize);
                }
                let mut shuffled = Trie::default();
                for &id in &order {
                    shuffled.insert(&patterns[id], id);
                }
                for request in &requests {
                    let a = forward.lookup(request);
                    let b = shuffled.lookup(request);
                    let normalize = |found: Option<Found>| found.map(|mut f| {
                        if let Endpoint::Conflict(ids) = &mut f.endpoint {
                            ids.sort_unstable();
                        }
                        f
                    });
                    prop_assert_eq!(normalize(a), normalize(b));
                }
            }

            #[test]
            fn path_decoding_never_panics(raw in "\\PC{0,64}") {
                let _ = crate::routes::path::decode_segments(&raw);
            }
        }
    }
}
