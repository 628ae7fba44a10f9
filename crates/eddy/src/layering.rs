//! The dependency rule between Eddy's crates (ARCHITECTURE.md, "Crates and the direction of dependencies"), checked against
//! `cargo metadata`: every workspace crate is listed with the workspace crates it may depend
//! on (normal and build dependencies; tests may use anything). A new crate or a new edge that
//! the table does not allow fails the test.

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
    // The HTTP front end: the service layer and the model only (every route calls a service).
    ("eddy-server", &["eddy-model", "eddy-service"]),
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
        ],
    ),
];

/// Edges allowed for now, each with the work that removes it. Shrinks to nothing.
const PENDING: &[(&str, &str, &str)] = &[];

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
            g("eddy-grpc", &["eddy-service"]),
        ];
        assert_eq!(
            violations(&graph),
            vec![
                "`eddy-store` must not depend on `eddy-service`".to_string(),
                "`eddy-server` must not depend on `eddy-store`".to_string(),
                "`eddy-server` must not depend on `eddy`".to_string(),
                "crate `eddy-grpc` is not in the dependency rule; add it to ALLOWED (and ARCHITECTURE.md)"
                    .to_string(),
            ]
        );
    }
}
