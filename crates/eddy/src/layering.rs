//! The dependency rule between Eddy's crates (ARCHITECTURE.md, "Crates and the direction of dependencies"), checked against
//! `cargo metadata`: every workspace crate is listed with the workspace crates it may depend
//! on (normal and build dependencies; tests may use anything). A new crate or a new edge that
//! the table does not allow fails the test. Within a crate, no two files may import each
//! other, directly or round a cycle (`crate::` paths outside comments and tests).

/// Each workspace crate and the workspace crates it may depend on.
const ALLOWED: &[(&str, &[&str])] = &[
    ("eddy-model", &[]),
    ("eddy-log", &[]),
    ("eddy-store", &["eddy-model", "eddy-log"]),
    ("eddy-stream", &["eddy-model", "eddy-log"]),
    (
        "eddy-service",
        &["eddy-model", "eddy-log", "eddy-store", "eddy-stream"],
    ),
    // The dashboard's built files (web/dist), embedded: nothing of Eddy's.
    ("eddy-web", &[]),
    // The HTTP front end: the service layer and the model only (every route calls a service),
    // and the dashboard's files it serves.
    ("eddy-server", &["eddy-model", "eddy-service", "eddy-web"]),
    // The gRPC API's generated messages and stubs: nothing of Eddy's.
    ("eddy-proto", &[]),
    // The gRPC front end: like HTTP, plus the generated API (every RPC calls a service).
    ("eddy-grpc", &["eddy-model", "eddy-service", "eddy-proto"]),
    // The client library: the wire API only, nothing of the server.
    ("eddy-client", &["eddy-proto"]),
    // The binary is the composition root: it may name every implementation.
    (
        "eddy",
        &[
            "eddy-model",
            "eddy-log",
            "eddy-store",
            "eddy-stream",
            "eddy-service",
            "eddy-server",
            "eddy-grpc",
            "eddy-client",
            "eddy-proto",
        ],
    ),
];

/// Edges allowed for now, each with the work that removes it. Shrinks to nothing.
const PENDING: &[(&str, &str, &str)] = &[];

/// The `crate::` modules a source file uses, outside comments and its `#[cfg(test)]` part
/// (`modules`: the crate's module paths, e.g. `store`, `wal::segment`).
fn module_uses(source: &str, modules: &[String]) -> Vec<String> {
    let code = source.split("\n#[cfg(test)]").next().unwrap_or("");
    let mut out = Vec::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (i, _) in line.match_indices("crate::") {
            let path: String = line[i + 7..]
                .chars()
                .take_while(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == ':'
                })
                .collect();
            let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
            // The longest module path the use names (`wal::segment` before `wal`).
            let found = (1..=parts.len())
                .rev()
                .map(|n| parts[..n].join("::"))
                .find(|m| modules.contains(m));
            if let Some(m) = found
                && !out.contains(&m)
            {
                out.push(m);
            }
        }
    }
    out
}

/// The import cycles of a module graph (module → modules it uses), each as its modules.
fn cycles(graph: &[(String, Vec<String>)]) -> Vec<Vec<String>> {
    // Reachability by repeated search: graphs here have a few dozen nodes.
    let reach = |from: &str| {
        let mut seen: Vec<String> = Vec::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for (k, deps) in graph {
                if *k == m {
                    for d in deps {
                        if !seen.contains(d) {
                            seen.push(d.clone());
                            todo.push(d.clone());
                        }
                    }
                }
            }
        }
        seen
    };
    let mut out: Vec<Vec<String>> = Vec::new();
    for (m, _) in graph {
        if out.iter().any(|c| c.contains(m)) {
            continue;
        }
        let from_m = reach(m);
        if !from_m.contains(m) {
            continue;
        }
        let mut cycle: Vec<String> = from_m
            .into_iter()
            .filter(|o| reach(o).contains(m))
            .collect();
        cycle.sort();
        out.push(cycle);
    }
    out
}

/// The forbidden edges and unknown crates of `graph` (crate → its workspace dependencies).
fn violations(graph: &[(String, Vec<String>)]) -> Vec<String> {
    let mut out = Vec::new();
    for (krate, deps) in graph {
        let Some((_, allowed)) = ALLOWED.iter().find(|(k, _)| k == krate) else {
            out.push(format!(
                "crate `{krate}` is not in the dependency rule; add it to ALLOWED (and ARCHITECTURE.md)"
            ));
            continue;
        };
        for dep in deps {
            let pending = PENDING.iter().any(|(k, d, _)| k == krate && d == dep);
            if !allowed.contains(&dep.as_str()) && !pending {
                out.push(format!("`{krate}` must not depend on `{dep}`"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Workspace crates and their normal/build dependencies on other workspace crates.
    fn workspace_graph() -> Vec<(String, Vec<String>)> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let packages = meta["packages"].as_array().unwrap();
        let names: Vec<&str> = packages
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        packages
            .iter()
            .map(|p| {
                let deps = p["dependencies"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|d| d["kind"].as_str() != Some("dev"))
                    .filter_map(|d| d["name"].as_str())
                    .filter(|n| names.contains(n))
                    .map(str::to_string)
                    .collect();
                (p["name"].as_str().unwrap().to_string(), deps)
            })
            .collect()
    }

    #[test]
    fn workspace_follows_the_dependency_rule() {
        let graph = workspace_graph();
        assert!(graph.len() >= ALLOWED.len(), "{graph:?}");
        let v = violations(&graph);
        assert!(v.is_empty(), "dependency rule broken:\n{}", v.join("\n"));
        // A pending edge that no longer exists must leave the list.
        for (k, d, why) in PENDING {
            assert!(
                graph
                    .iter()
                    .any(|(c, deps)| c == k && deps.iter().any(|x| x == d)),
                "`{k}` no longer depends on `{d}` ({why}): remove it from PENDING"
            );
        }
    }

    /// The module graph of one crate's `src`, from its files.
    fn module_graph(src: &std::path::Path) -> Vec<(String, Vec<String>)> {
        fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    files(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let mut paths = Vec::new();
        files(src, &mut paths);
        let module = |p: &std::path::Path| {
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let s = rel.to_string_lossy().replace('/', "::");
            s.strip_suffix("::mod").map(str::to_string).unwrap_or(s)
        };
        // Test-only files may use anything.
        let is_test = |m: &str| m == "tests" || m.ends_with("tests") || m.starts_with("test_");
        let modules: Vec<String> = paths.iter().map(|p| module(p)).collect();
        paths
            .iter()
            .map(|p| (module(p), p))
            .filter(|(m, _)| !is_test(m.rsplit("::").next().unwrap_or(m)))
            .map(|(m, p)| {
                let source = std::fs::read_to_string(p).unwrap();
                let uses = module_uses(&source, &modules)
                    .into_iter()
                    .filter(|u| *u != m && !is_test(u))
                    .collect();
                (m, uses)
            })
            .collect()
    }

    #[test]
    fn no_crate_has_an_import_cycle_between_its_files() {
        let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut found = Vec::new();
        for e in std::fs::read_dir(&crates).unwrap() {
            let src = e.unwrap().path().join("src");
            if src.is_dir() {
                for c in cycles(&module_graph(&src)) {
                    found.push(format!("{}: {}", src.display(), c.join(" <-> ")));
                }
            }
        }
        assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
    }

    #[test]
    fn a_cycle_between_files_is_found() {
        let modules: Vec<String> = ["store", "query", "digest", "wal", "wal::segment"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            module_uses(
                "//! See crate::digest.\nuse crate::query::{Cursor};\nuse crate::wal::segment::Segment;\nfn f() { crate::query::x(); }\n#[cfg(test)]\nmod tests { use crate::digest; }",
                &modules
            ),
            vec!["query".to_string(), "wal::segment".to_string()]
        );
        let g = |k: &str, deps: &[&str]| {
            (
                k.to_string(),
                deps.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            )
        };
        let graph = vec![
            g("store", &["digest"]),
            g("digest", &["query"]),
            g("query", &["store", "rows"]),
            g("rows", &[]),
        ];
        assert_eq!(
            cycles(&graph),
            vec![vec![
                "digest".to_string(),
                "query".to_string(),
                "store".to_string()
            ]]
        );
        assert!(cycles(&graph[1..]).is_empty());
    }

    #[test]
    fn forbidden_edges_and_unknown_crates_are_reported() {
        let g = |k: &str, deps: &[&str]| {
            (
                k.to_string(),
                deps.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            )
        };
        let graph = vec![
            g("eddy-model", &[]),
            // An engine reaching up into the service layer.
            g("eddy-store", &["eddy-model", "eddy-service"]),
            // The front end reaching past the services into an engine, and naming the binary.
            g("eddy-server", &["eddy-service", "eddy-store", "eddy"]),
            // The gRPC front end reaching past the services into the log.
            g("eddy-grpc", &["eddy-service", "eddy-log"]),
            g("eddy-kafka", &["eddy-log"]),
        ];
        assert_eq!(
            violations(&graph),
            vec![
                "`eddy-store` must not depend on `eddy-service`".to_string(),
                "`eddy-server` must not depend on `eddy-store`".to_string(),
                "`eddy-server` must not depend on `eddy`".to_string(),
                "`eddy-grpc` must not depend on `eddy-log`".to_string(),
                "crate `eddy-kafka` is not in the dependency rule; add it to ALLOWED (and ARCHITECTURE.md)"
                    .to_string(),
            ]
        );
    }
}
