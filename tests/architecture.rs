//! The shape of `src/`: no import cycles, and the map at the top of
//! `src/lib.rs` names every module.
//!
//! The import graph is read with `syn` from every file of the library
//! (`src/main.rs`, the binary, aside): each `use` and each path that starts
//! with `crate`, `super`, `self` or a child module's name, in code and in
//! macro invocations, is an edge from its file to the file that defines the
//! module it names. Left out, as declarations rather than imports: `mod`
//! lines, a module's `pub use` of its own children, `#[cfg(test)]` items,
//! `#[deprecated]` items (old paths of moved items, kept for existing
//! code), and `src/lib.rs` itself (the crate root re-exports everything). Paths
//! through the root's re-exports (`crate::Result`) count as paths to their
//! source module.
//!
//! Two graphs must be acyclic: files, and top-level modules (a file counts
//! as the top-level module it sits in, so `dependency/rpc.rs → client.rs →
//! dependency/mod.rs` is a cycle too).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

type ModPath = Vec<String>;

/// Every module file of the library, by module path.
fn module_files(src: &Path) -> BTreeMap<ModPath, PathBuf> {
    let mut files = BTreeMap::new();
    files.insert(Vec::new(), src.join("lib.rs"));
    fn walk(dir: &Path, prefix: &ModPath, files: &mut BTreeMap<ModPath, PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                let mut sub = prefix.clone();
                sub.push(name);
                if path.join("mod.rs").exists() {
                    files.insert(sub.clone(), path.join("mod.rs"));
                }
                walk(&path, &sub, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                if prefix.is_empty() && (name == "lib" || name == "main") {
                    continue;
                }
                if name == "mod" {
                    continue;
                }
                let mut module = prefix.clone();
                module.push(name);
                files.insert(module, path);
            }
        }
    }
    walk(src, &Vec::new(), &mut files);
    files
}

/// One reference to a module path, as written in a file.
#[derive(Debug, Clone)]
struct Reference {
    /// The module the path appears in (inline modules included).
    scope: ModPath,
    /// The path's segments.
    segments: Vec<String>,
    /// Whether it is a `pub use` (a re-export).
    reexport: bool,
}

struct Collector {
    scope: ModPath,
    refs: Vec<Reference>,
    in_pub_use: bool,
}

/// `#[cfg(test)]` items (tests) and `#[deprecated]` items (the old paths
/// of moved items, kept for compatibility) are not the code's imports.
fn is_left_out(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        let cfg_test = attr.path().is_ident("cfg")
            && attr
                .meta
                .require_list()
                .is_ok_and(|list| list.tokens.to_string().trim() == "test");
        cfg_test || attr.path().is_ident("deprecated")
    })
}

impl Collector {
    fn push(&mut self, segments: Vec<String>) {
        if segments.is_empty() {
            return;
        }
        self.refs.push(Reference {
            scope: self.scope.clone(),
            segments,
            reexport: self.in_pub_use,
        });
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.use_tree(prefix, &path.tree);
                prefix.pop();
            }
            syn::UseTree::Name(name) => {
                let mut segments = prefix.clone();
                if name.ident != "self" {
                    segments.push(name.ident.to_string());
                }
                self.push(segments);
            }
            syn::UseTree::Rename(rename) => {
                let mut segments = prefix.clone();
                if rename.ident != "self" {
                    segments.push(rename.ident.to_string());
                }
                self.push(segments);
            }
            syn::UseTree::Glob(_) => self.push(prefix.clone()),
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }

    /// Paths inside macro invocations, which syn leaves as tokens:
    /// `crate::a::b`, `super::x`, `self::y` sequences.
    fn tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < trees.len() {
            match &trees[i] {
                TokenTree::Group(group) => self.tokens(group.stream()),
                TokenTree::Ident(ident)
                    if ident == "crate" || ident == "super" || ident == "self" =>
                {
                    let mut segments = vec![ident.to_string()];
                    let mut j = i + 1;
                    loop {
                        let colons = matches!(
                            (trees.get(j), trees.get(j + 1)),
                            (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                                if a.as_char() == ':' && b.as_char() == ':'
                        );
                        match (colons, trees.get(j + 2)) {
                            (true, Some(TokenTree::Ident(next))) => {
                                segments.push(next.to_string());
                                j += 3;
                            }
                            _ => break,
                        }
                    }
                    if segments.len() > 1 {
                        self.push(segments);
                    }
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs: &[syn::Attribute] = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(s) => &s.attrs,
            syn::Item::Trait(t) => &t.attrs,
            syn::Item::Type(t) => &t.attrs,
            _ => &[],
        };
        if is_left_out(attrs) {
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if let Some((_, items)) = &item.content {
            self.scope.push(item.ident.to_string());
            for item in items {
                self.visit_item(item);
            }
            self.scope.pop();
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.in_pub_use = !matches!(item.vis, syn::Visibility::Inherited);
        self.use_tree(&mut Vec::new(), &item.tree);
        self.in_pub_use = false;
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        self.push(
            path.segments
                .iter()
                .map(|segment| segment.ident.to_string())
                .collect(),
        );
        syn::visit::visit_path(self, path);
    }

    /// `pub(super)`, `pub(crate)`: visibility, not an import.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

/// The root's re-exports: `pub use crate::x::Y;` in `src/lib.rs`, as
/// `Y → x::Y`.
fn root_reexports(lib: &syn::File) -> BTreeMap<String, ModPath> {
    let mut map = BTreeMap::new();
    let mut collector = Collector {
        scope: Vec::new(),
        refs: Vec::new(),
        in_pub_use: false,
    };
    for item in &lib.items {
        if let syn::Item::Use(item) = item
            && !matches!(item.vis, syn::Visibility::Inherited)
        {
            collector.use_tree(&mut Vec::new(), &item.tree);
        }
    }
    for reference in collector.refs {
        let mut segments = reference.segments;
        if segments.first().is_some_and(|s| s == "crate") {
            segments.remove(0);
        }
        if let Some(last) = segments.last() {
            map.insert(last.clone(), segments.clone());
        }
    }
    map
}

struct Graph {
    /// file → (file it imports → one path that shows it)
    edges: BTreeMap<PathBuf, BTreeMap<PathBuf, String>>,
}

fn import_graph(src: &Path) -> (Graph, BTreeMap<ModPath, PathBuf>) {
    let files = module_files(src);
    let lib: syn::File = syn::parse_file(&std::fs::read_to_string(src.join("lib.rs")).unwrap())
        .expect("src/lib.rs parses");
    let reexports = root_reexports(&lib);
    let mut edges: BTreeMap<PathBuf, BTreeMap<PathBuf, String>> = BTreeMap::new();
    for (module, file) in &files {
        if module.is_empty() {
            continue; // the crate root re-exports everything
        }
        let text = std::fs::read_to_string(file).unwrap();
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut collector = Collector {
            scope: module.clone(),
            refs: Vec::new(),
            in_pub_use: false,
        };
        collector.visit_file(&ast);
        for reference in collector.refs {
            let Some(target) = resolve(&reference, &files, &reexports) else {
                continue;
            };
            let target_file = &files[&target];
            if target_file == file {
                continue;
            }
            // A module re-exporting its own children declares them.
            let is_child = target.len() > module.len() && target.starts_with(module);
            if reference.reexport && is_child {
                continue;
            }
            edges
                .entry(file.clone())
                .or_default()
                .entry(target_file.clone())
                .or_insert_with(|| reference.segments.join("::"));
        }
    }
    (Graph { edges }, files)
}

/// The module file a path names, if it names one of the crate's.
fn resolve(
    reference: &Reference,
    files: &BTreeMap<ModPath, PathBuf>,
    reexports: &BTreeMap<String, ModPath>,
) -> Option<ModPath> {
    let segments = &reference.segments;
    let mut absolute: ModPath = match segments[0].as_str() {
        "crate" => segments[1..].to_vec(),
        "self" => {
            let mut path = reference.scope.clone();
            path.extend_from_slice(&segments[1..]);
            path
        }
        "super" => {
            let mut path = reference.scope.clone();
            let mut rest = &segments[..];
            while rest.first().is_some_and(|s| s == "super") {
                path.pop();
                rest = &rest[1..];
            }
            path.extend_from_slice(rest);
            path
        }
        first => {
            // A child module of the current one, named directly.
            let mut child = reference.scope.clone();
            child.push(first.to_owned());
            if !files.contains_key(&child) {
                return None;
            }
            let mut path = reference.scope.clone();
            path.extend_from_slice(segments);
            path
        }
    };
    // Through the root's re-exports: `crate::Result` is `crate::error::Result`.
    if let Some(first) = absolute.first()
        && !files.contains_key(&vec![first.clone()])
    {
        match reexports.get(first) {
            Some(target) => {
                let rest = absolute[1..].to_vec();
                absolute = target.clone();
                absolute.extend(rest);
            }
            None => return None,
        }
    }
    (1..=absolute.len())
        .rev()
        .map(|n| absolute[..n].to_vec())
        .find(|prefix| files.contains_key(prefix))
}

/// Strongly connected components with more than one node (Tarjan).
fn cycles<N: Ord + Clone>(edges: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    struct State<N> {
        index: BTreeMap<N, usize>,
        low: BTreeMap<N, usize>,
        stack: Vec<N>,
        on_stack: BTreeSet<N>,
        next: usize,
        out: Vec<Vec<N>>,
    }
    fn connect<N: Ord + Clone>(node: &N, edges: &BTreeMap<N, BTreeSet<N>>, s: &mut State<N>) {
        s.index.insert(node.clone(), s.next);
        s.low.insert(node.clone(), s.next);
        s.next += 1;
        s.stack.push(node.clone());
        s.on_stack.insert(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if !s.index.contains_key(next) {
                connect(next, edges, s);
                let low = s.low[node].min(s.low[next]);
                s.low.insert(node.clone(), low);
            } else if s.on_stack.contains(next) {
                let low = s.low[node].min(s.index[next]);
                s.low.insert(node.clone(), low);
            }
        }
        if s.low[node] == s.index[node] {
            let mut component = Vec::new();
            loop {
                let top = s.stack.pop().expect("the node is on the stack");
                s.on_stack.remove(&top);
                let done = &top == node;
                component.push(top);
                if done {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut state = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    let nodes: BTreeSet<N> = edges
        .iter()
        .flat_map(|(from, to)| std::iter::once(from.clone()).chain(to.iter().cloned()))
        .collect();
    for node in &nodes {
        if !state.index.contains_key(node) {
            connect(node, edges, &mut state);
        }
    }
    state.out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn relative(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn no_import_cycle_between_files() {
    let (graph, _) = import_graph(&src());
    let edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = graph
        .edges
        .iter()
        .map(|(from, to)| (from.clone(), to.keys().cloned().collect()))
        .collect();
    let found = cycles(&edges);
    let mut report = String::new();
    for component in &found {
        report.push_str("cycle among:\n");
        for file in component {
            for (to, via) in &graph.edges[file] {
                if component.contains(to) {
                    report.push_str(&format!(
                        "  {} -> {}   (via `{via}`)\n",
                        relative(file),
                        relative(to)
                    ));
                }
            }
        }
    }
    assert!(found.is_empty(), "import cycles between files:\n{report}");
}

#[test]
fn no_import_cycle_between_modules() {
    let (graph, files) = import_graph(&src());
    let top = |file: &PathBuf| -> String {
        files
            .iter()
            .find(|(_, f)| *f == file)
            .and_then(|(module, _)| module.first().cloned())
            .unwrap_or_default()
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut via: BTreeMap<(String, String), String> = BTreeMap::new();
    for (from, targets) in &graph.edges {
        for (to, path) in targets {
            let (a, b) = (top(from), top(to));
            if a != b && !a.is_empty() && !b.is_empty() {
                edges.entry(a.clone()).or_default().insert(b.clone());
                via.entry((a, b))
                    .or_insert_with(|| format!("{} uses `{path}`", relative(from)));
            }
        }
    }
    let found = cycles(&edges);
    let mut report = String::new();
    for component in &found {
        report.push_str("cycle among modules:\n");
        for a in component {
            for b in &edges[a] {
                if component.contains(b) {
                    report.push_str(&format!(
                        "  {a} -> {b}   ({})\n",
                        via[&(a.clone(), b.clone())]
                    ));
                }
            }
        }
    }
    assert!(found.is_empty(), "import cycles between modules:\n{report}");
}

#[test]
fn the_checker_sees_a_cycle() {
    // The graph code itself, on a known cycle: a → b → c → a, d → a.
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    edges.entry("a").or_default().insert("b");
    edges.entry("b").or_default().insert("c");
    edges.entry("c").or_default().insert("a");
    edges.entry("d").or_default().insert("a");
    assert_eq!(cycles(&edges), vec![vec!["a", "b", "c"]]);
    edges.get_mut("c").unwrap().clear();
    assert!(cycles(&edges).is_empty());
}

/// The top-level modules `src/lib.rs` declares (`__private` aside).
fn declared_modules(lib: &syn::File) -> BTreeSet<String> {
    lib.items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Mod(m) if !m.ident.to_string().starts_with("__") => {
                Some(m.ident.to_string())
            }
            _ => None,
        })
        .collect()
}

/// The modules named in the last column of the map in the crate docs.
fn mapped_modules(lib_text: &str) -> BTreeSet<String> {
    let docs: Vec<&str> = lib_text
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("//!"))
        .map(str::trim)
        .collect();
    let start = docs
        .iter()
        .position(|line| line.starts_with("## Where each concept lives"))
        .expect("src/lib.rs has a `## Where each concept lives` section");
    docs[start + 1..]
        .iter()
        .take_while(|line| !line.starts_with("## "))
        .filter(|line| line.starts_with('|') && !line.starts_with("|---"))
        .filter_map(|line| line.trim_end_matches('|').rsplit('|').next())
        .filter_map(|cell| {
            let cell = cell.trim();
            let name = cell.split('`').nth(1)?;
            let name = name.split('@').next()?;
            Some(name.to_owned())
        })
        .filter(|name| name != "module")
        .collect()
}

#[test]
fn the_crate_map_names_every_module() {
    let text = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let lib = syn::parse_file(&text).unwrap();
    let declared = declared_modules(&lib);
    let mapped = mapped_modules(&text);
    let missing: Vec<_> = declared.difference(&mapped).collect();
    let unknown: Vec<_> = mapped.difference(&declared).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "the map at the top of src/lib.rs is out of date: modules not in it {missing:?}, \
         names in it that are not modules {unknown:?}"
    );
}

#[test]
fn the_map_reader_reads_the_last_column() {
    let text = "//! ## Where each concept lives\n//! | nameko | enoki | module |\n//! |---|---|---|\n//! | a | b | [`service`](mod@service) |\n//! | c | d | `testing` (feature `testing`) |\n//! ## Features\n//! | x | y | [`nope`] |\n";
    let names: Vec<String> = mapped_modules(text).into_iter().collect();
    assert_eq!(names, vec!["service", "testing"]);
}

/// Functions whose return type is `Result<_, String>`.
struct StringErrors {
    file: String,
    found: Vec<String>,
}

impl<'ast> Visit<'ast> for StringErrors {
    fn visit_signature(&mut self, sig: &'ast syn::Signature) {
        if let syn::ReturnType::Type(_, ty) = &sig.output
            && let syn::Type::Path(path) = &**ty
            && let Some(last) = path.path.segments.last()
            && last.ident == "Result"
            && let syn::PathArguments::AngleBracketed(args) = &last.arguments
            && let Some(syn::GenericArgument::Type(syn::Type::Path(error))) =
                args.args.iter().nth(1)
            && error.path.is_ident("String")
        {
            self.found.push(format!("{}: fn {}", self.file, sig.ident));
        }
        syn::visit::visit_signature(self, sig);
    }
}

#[test]
fn errors_are_typed_not_strings() {
    let mut found = Vec::new();
    for file in module_files(&src()).values() {
        let ast = syn::parse_file(&std::fs::read_to_string(file).unwrap()).unwrap();
        let mut visitor = StringErrors {
            file: relative(file),
            found: Vec::new(),
        };
        visitor.visit_file(&ast);
        found.extend(visitor.found);
    }
    assert!(
        found.is_empty(),
        "functions returning Result<_, String> (use enoki::Error, which keeps causes): {found:?}"
    );
}
