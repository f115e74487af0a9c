//! The architecture's invariants, checked on the source read as Rust (imports, paths, attributes, match
//! arms; never text) and on the manifests: the plan model does no I/O, one module runs programs, the
//! executor reaches the machine through `System`, kinds are matched exhaustively, libraries document
//! their API, dependencies point down, and every line keeps the workspace's width. A failure names the
//! file and line.

use std::path::{Path, PathBuf};

/// The crates that ship in the binary; test harnesses (vm-tests, testkit) may do what they like.
const SHIPPED: &[&str] = &["layouts", "partitioner", "installer", "handover", "tui", "remote", "hetzner", "nix-dabei"];

/// The one module allowed to start programs.
const COMMAND_MODULE: &str = "installer/src/command.rs";

/// Kept in step with rustfmt.toml's max_width.
const MAX_WIDTH: usize = 120;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() && name != "target" && name != ".git" && name != "fuzz-target" {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

fn files_under(relative: &str) -> Vec<(String, String)> {
    let root = workspace();
    let mut found = Vec::new();
    rust_files(&root.join(relative), &mut found);
    found.sort();
    found
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable source");
            (path.strip_prefix(&root).expect("inside").display().to_string(), text)
        })
        .collect()
}

/// The enums whose variants are kinds the workspace dispatches on: a match over one of them names every
/// variant, so that a new kind fails to compile where it must be handled.
const KIND_ENUMS: &[&str] = &["Content", "Operation", "Event", "Format", "RemoteEvent", "Phase"];

/// What the tidy test reads out of a source file, parsed as Rust. Items compiled only for tests or the
/// `test-hooks` feature are left out: they never ship.
#[derive(Default)]
struct Parsed {
    /// Every path named, by `use` (flattened, as written before any `as`) or in code, with its line.
    paths: Vec<(String, usize)>,
    /// Lines of `#[non_exhaustive]` attributes.
    non_exhaustive: Vec<usize>,
    /// Matches over a kind enum ([`KIND_ENUMS`]) whose `_` arm handles the kinds it does not name.
    wildcard_dispatch: Vec<(String, usize)>,
    /// The crate-level attributes (`#![...]`), as tokens.
    inner_attributes: Vec<String>,
}

fn line_of(span: proc_macro2::Span) -> usize {
    span.start().line
}

fn only_for_tests(attributes: &[syn::Attribute]) -> bool {
    attributes.iter().any(|a| {
        let tokens = quote_tokens(&a.meta);
        a.path().is_ident("cfg") && tokens.contains("test") && !tokens.contains("not")
    })
}

fn quote_tokens(tokens: &impl quote::ToTokens) -> String {
    tokens.to_token_stream().to_string()
}

fn flatten_use(prefix: &str, tree: &syn::UseTree, line: usize, out: &mut Vec<(String, usize)>) {
    let join = |name: &str| if prefix.is_empty() { name.to_string() } else { format!("{prefix}::{name}") };
    match tree {
        syn::UseTree::Path(path) => flatten_use(&join(&path.ident.to_string()), &path.tree, line, out),
        syn::UseTree::Name(name) if name.ident == "self" => out.push((prefix.to_string(), line)),
        syn::UseTree::Name(name) => out.push((join(&name.ident.to_string()), line)),
        syn::UseTree::Rename(rename) => out.push((join(&rename.ident.to_string()), line)),
        syn::UseTree::Glob(_) => out.push((join("*"), line)),
        syn::UseTree::Group(group) => group.items.iter().for_each(|t| flatten_use(prefix, t, line, out)),
    }
}

/// The kind enum a pattern names (`Operation::Mkfs(..)` is `Operation`), if any.
fn kind_of(pattern: &syn::Pat) -> Option<String> {
    let path = match pattern {
        syn::Pat::TupleStruct(p) => &p.path,
        syn::Pat::Struct(p) => &p.path,
        syn::Pat::Path(p) => &p.path,
        syn::Pat::Or(or) => return or.cases.iter().find_map(kind_of),
        syn::Pat::Reference(r) => return kind_of(&r.pat),
        _ => return None,
    };
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let enum_name = segments.len().checked_sub(2).map(|i| segments[i].clone())?;
    KIND_ENUMS.contains(&enum_name.as_str()).then_some(enum_name)
}

/// A `_` arm that leaves the other kinds alone (`false`, `None`, `continue`, `{}`) or refuses them (an
/// `Err`, a `report` of a problem): a new kind then gets nothing or a refusal, never another kind's
/// handling. Picking one kind is written `if let` or `matches!`.
fn leaves_alone_or_refuses(body: &syn::Expr) -> bool {
    match body {
        syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Bool(b), .. }) => !b.value,
        syn::Expr::Path(p) => p.path.is_ident("None"),
        syn::Expr::Continue(_) => true,
        syn::Expr::Block(b) => b.block.stmts.is_empty(),
        syn::Expr::Tuple(t) => t.elems.is_empty(),
        syn::Expr::Return(r) => r.expr.as_deref().is_none_or(leaves_alone_or_refuses),
        syn::Expr::MethodCall(call) => call.method == "report",
        syn::Expr::Call(call) => matches!(&*call.func, syn::Expr::Path(p) if p.path.is_ident("Err")),
        _ => false,
    }
}

impl<'ast> syn::visit::Visit<'ast> for Parsed {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attributes = match item {
            syn::Item::Fn(i) => &i.attrs,
            syn::Item::Mod(i) => &i.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(i) => &i.attrs,
            syn::Item::Struct(i) => &i.attrs,
            syn::Item::Enum(i) => &i.attrs,
            syn::Item::Const(i) => &i.attrs,
            syn::Item::Static(i) => &i.attrs,
            syn::Item::Trait(i) => &i.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if !only_for_tests(attributes) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_impl_item_fn(&mut self, function: &'ast syn::ImplItemFn) {
        if !only_for_tests(&function.attrs) {
            syn::visit::visit_impl_item_fn(self, function);
        }
    }

    fn visit_stmt(&mut self, statement: &'ast syn::Stmt) {
        let attributes = match statement {
            syn::Stmt::Local(local) => &local.attrs,
            syn::Stmt::Macro(m) => &m.attrs,
            _ => return syn::visit::visit_stmt(self, statement),
        };
        if !only_for_tests(attributes) {
            syn::visit::visit_stmt(self, statement);
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let line = line_of(item.use_token.span);
        flatten_use("", &item.tree, line, &mut self.paths);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if let Some(first) = path.segments.first() {
            let joined: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.paths.push((joined.join("::"), line_of(first.ident.span())));
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_attribute(&mut self, attribute: &'ast syn::Attribute) {
        if attribute.path().is_ident("non_exhaustive") {
            self.non_exhaustive.push(line_of(attribute.pound_token.span));
        }
        if matches!(attribute.style, syn::AttrStyle::Inner(_)) {
            self.inner_attributes.push(quote_tokens(&attribute.meta).replace(' ', ""));
        }
        syn::visit::visit_attribute(self, attribute);
    }

    fn visit_expr_match(&mut self, expression: &'ast syn::ExprMatch) {
        if let Some(kind) = expression.arms.iter().find_map(|arm| kind_of(&arm.pat)) {
            for arm in &expression.arms {
                if matches!(arm.pat, syn::Pat::Wild(_)) && arm.guard.is_none() && !leaves_alone_or_refuses(&arm.body) {
                    self.wildcard_dispatch.push((kind.clone(), line_of(expression.match_token.span)));
                }
            }
        }
        syn::visit::visit_expr_match(self, expression);
    }
}

/// Every shipped crate's sources, parsed: (file relative to the workspace, what it names).
fn shipped_sources() -> Vec<(String, Parsed)> {
    let mut parsed = Vec::new();
    for krate in SHIPPED {
        for (name, text) in files_under(&format!("{krate}/src")) {
            let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut found = Parsed::default();
            syn::visit::Visit::visit_file(&mut found, &file);
            parsed.push((name, found));
        }
    }
    assert!(parsed.iter().any(|(name, _)| name.starts_with("partitioner/")), "sources not found");
    parsed
}

/// The paths in `sources` (files for which `applies` holds) that start with one of `forbidden`.
fn naming(sources: &[(String, Parsed)], applies: impl Fn(&str) -> bool, forbidden: &[&str]) -> Vec<String> {
    let mut hits = Vec::new();
    for (name, parsed) in sources.iter().filter(|(name, _)| applies(name)) {
        for (path, line) in &parsed.paths {
            let path = path.trim_start_matches("::");
            if let Some(prefix) = forbidden.iter().find(|f| path == **f || path.starts_with(&format!("{f}::"))) {
                hits.push(format!("{name}:{line}: {path} ({prefix})"));
            }
        }
    }
    hits
}

#[test]
fn the_plan_model_does_no_io_and_runs_nothing() {
    let sources = shipped_sources();
    let io = ["std::fs", "std::process", "std::net", "std::env", "std::os", "std::io::stdin", "std::io::stdout"];
    let hits = naming(&sources, |name| name.starts_with("layouts/"), &io);
    assert!(hits.is_empty(), "layouts must stay pure:\n{}", hits.join("\n"));
    // Nor do the crates it builds on: parsing and data structures only.
    let pure = ["serde", "serde_json", "toml", "indexmap", "thiserror", "serde_path_to_error"];
    let unexpected: Vec<String> = dependencies("layouts").into_iter().filter(|d| !pure.contains(&d.as_str())).collect();
    assert!(unexpected.is_empty(), "layouts depends on {unexpected:?}, which may do I/O");
}

#[test]
fn only_the_command_module_starts_programs() {
    let sources = shipped_sources();
    let starting = [
        "std::process::Command",
        "std::process::Stdio",
        "std::process::Child",
        "std::os::unix::process",
        "nix::unistd::execv",
        "nix::unistd::execve",
        "nix::unistd::execvp",
        "libc::fork",
    ];
    let hits = naming(&sources, |name| name != COMMAND_MODULE, &starting);
    assert!(hits.is_empty(), "programs are run through {COMMAND_MODULE} only:\n{}", hits.join("\n"));
}

/// The executor's modules that may touch files themselves: the real system behind `System`, and the
/// run's own state (its journal, its lock, key files read into `Secret`s), which is not the machine's
/// disks and must work the same under `SimSystem`.
const EXECUTOR_FILE_ACCESS: &[&str] = &[
    "installer/src/system/real.rs",
    "installer/src/system/linux.rs",
    "installer/src/command.rs",
    "installer/src/journal.rs",
    "installer/src/lock.rs",
    "installer/src/secret.rs",
    // libcryptsetup, behind `RealSystem`'s LUKS methods.
    "installer/src/luks.rs",
];

#[test]
fn the_executor_touches_the_machine_only_through_system() {
    let sources = shipped_sources();
    let machine = ["std::fs", "std::os::unix::fs", "nix::mount", "nix::sys::ioctl", "nix::fcntl", "libcryptsetup_rs"];
    let outside = |name: &str| name.starts_with("installer/src/") && !EXECUTOR_FILE_ACCESS.contains(&name);
    let hits = naming(&sources, outside, &machine);
    assert!(hits.is_empty(), "the executor reaches the machine through System:\n{}", hits.join("\n"));
}

#[test]
fn no_enum_is_non_exhaustive_and_no_dispatch_has_a_catch_all() {
    let sources = shipped_sources();
    let mut hits = Vec::new();
    for (name, parsed) in &sources {
        hits.extend(parsed.non_exhaustive.iter().map(|line| format!("{name}:{line}: #[non_exhaustive]")));
        hits.extend(parsed.wildcard_dispatch.iter().map(|(kind, line)| format!("{name}:{line}: `_ =>` over {kind}")));
    }
    assert!(hits.is_empty(), "a new kind must fail to compile where it is handled:\n{}", hits.join("\n"));
}

#[test]
fn the_library_crates_deny_missing_docs() {
    let sources = shipped_sources();
    let libraries: Vec<&(String, Parsed)> = sources.iter().filter(|(name, _)| name.ends_with("/src/lib.rs")).collect();
    assert_eq!(libraries.len(), SHIPPED.len() - 1, "every shipped crate but the binary is a library");
    for (name, parsed) in libraries {
        assert!(parsed.inner_attributes.iter().any(|a| a == "deny(missing_docs)"), "{name}: no #![deny(missing_docs)]");
    }
}

/// The workspace's crates each one may use: dependencies point from the frontends down to the plan model.
const LAYERS: &[(&str, &[&str])] = &[
    ("layouts", &[]),
    ("partitioner", &["layouts"]),
    ("installer", &["layouts", "partitioner"]),
    ("handover", &["layouts", "installer"]),
    ("remote", &["layouts", "installer"]),
    ("hetzner", &["installer"]),
    ("tui", &["layouts", "partitioner", "installer"]),
    ("nix-dabei", &["layouts", "partitioner", "installer", "handover", "tui", "remote", "hetzner"]),
];

/// A crate's `[dependencies]`, by name, read from its manifest.
fn dependencies(krate: &str) -> Vec<String> {
    let text = std::fs::read_to_string(workspace().join(krate).join("Cargo.toml")).expect("a manifest");
    let manifest: toml::Table = text.parse().unwrap_or_else(|e| panic!("{krate}/Cargo.toml: {e}"));
    manifest
        .get("dependencies")
        .and_then(toml::Value::as_table)
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn dependencies_point_down_and_only_the_binary_uses_anyhow() {
    assert_eq!(LAYERS.len(), SHIPPED.len());
    for (krate, allowed) in LAYERS {
        let dependencies = dependencies(krate);
        for dependency in &dependencies {
            let internal = SHIPPED.contains(&dependency.as_str());
            assert!(!internal || allowed.contains(&dependency.as_str()), "{krate} must not depend on {dependency}");
        }
        let binary = *krate == "nix-dabei";
        assert_eq!(dependencies.iter().any(|d| d == "anyhow"), binary, "{krate}: anyhow is the binary's alone");
    }
}

#[test]
fn every_line_fits_the_workspace_width() {
    let mut long = Vec::new();
    for (name, text) in files_under(".") {
        for (number, line) in text.lines().enumerate() {
            if line.chars().count() > MAX_WIDTH {
                long.push(format!("{name}:{}: {} columns", number + 1, line.chars().count()));
            }
        }
    }
    assert!(long.is_empty(), "lines over {MAX_WIDTH} columns:\n{}", long.join("\n"));
}

#[test]
fn the_width_is_the_one_rustfmt_keeps() {
    let config = std::fs::read_to_string(workspace().join("rustfmt.toml")).expect("rustfmt.toml");
    assert!(config.lines().any(|l| l.trim() == format!("max_width = {MAX_WIDTH}")), "{config}");
}

/// The newest Rust the code itself needs (`u64::is_multiple_of`).
const CODE_NEEDS: (u32, u32) = (1, 87);

fn version(text: &str) -> (u32, u32) {
    let mut parts = text.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn the_declared_rust_version_is_what_the_locked_dependencies_and_the_code_need() {
    let manifest = std::fs::read_to_string(workspace().join("Cargo.toml")).expect("Cargo.toml");
    let declared = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| version(v.trim_matches('"')))
        .expect("rust-version in the workspace manifest");
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(workspace())
        .output()
        .expect("cargo metadata");
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let (needed, by) = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        // Dependencies from a registry; the workspace's own packages inherit the declared version.
        .filter(|p| !p["source"].is_null())
        .filter_map(|p| Some((version(p["rust_version"].as_str()?), p["name"].as_str()?.to_string())))
        .chain([(CODE_NEEDS, "nix-dabei's own code".to_string())])
        .max()
        .expect("some version");
    assert_eq!(declared, needed, "rust-version must be {}.{} ({by} needs it)", needed.0, needed.1);
}
