//! For every route: no key, malformed key, unknown key, revoked key, wrong scope, other
//! tenant's key → the right status and no side effect (log and catalog unchanged).

use reqwest::StatusCode;

use crate::common::TestServer;

struct Route {
    method: &'static str,
    path: String,
    body: Option<&'static str>,
    scope: &'static str,
}

#[tokio::test]
async fn every_route_rejects_bad_keys_without_side_effects() {
    let s = TestServer::spawn().await;
    let a = s.admin_key.clone();
    let (victim, victim_key, victim_key_id) = s.tenant_with_key("victim", &["read_write"]).await;
    let (_, other_key, _) = s.tenant_with_key("other", &["read_write"]).await;
    let (read_only, _) = s.key_for(&victim, &["read"]).await;
    let (write_only, _) = s.key_for(&victim, &["write"]).await;
    let (revoked, revoked_id) = s.key_for(&victim, &["read_write"]).await;
    assert_eq!(
        s.request(
            "DELETE",
            &format!("/api/v1/tenants/{victim}/keys/{revoked_id}"),
            Some(&a),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );

    let ev_body = r#"{"type":"x","device_id":"d","value":1}"#;
    let ev = Some(ev_body);
    let mut routes: Vec<Route> = [
        "/api/v1/events",
        "/api/data",
        "/ingest",
        "/telemetry",
        "/events",
        "/events/async",
        "/events/batch",
        "/v1/events",
    ]
    .into_iter()
    .map(|p| Route {
        method: "POST",
        path: p.into(),
        body: ev,
        scope: "write",
    })
    .collect();
    routes.push(Route {
        method: "GET",
        path: "/stats".into(),
        body: None,
        scope: "read",
    });
    routes.push(Route {
        method: "GET",
        path: "/lag".into(),
        body: None,
        scope: "read",
    });
    for path in [
        "/api/v1/events",
        "/api/v1/events/recent",
        "/api/data/recent",
        "/api/v1/devices",
        "/api/v1/devices/d/metrics",
        "/api/v1/timeseries?metric=v",
        "/api/v1/rollups?metric=v",
        "/api/v1/rollups?dimension=type",
        "/api/v1/analytics/aggregates",
    ] {
        routes.push(Route {
            method: "GET",
            path: path.into(),
            body: None,
            scope: "read",
        });
    }
    let t = format!("/api/v1/tenants/{victim}");
    for (method, path, body) in [
        (
            "POST",
            "/api/v1/tenants".to_string(),
            Some(r#"{"name":"intruder"}"#),
        ),
        ("GET", "/api/v1/tenants".to_string(), None),
        ("GET", t.clone(), None),
        ("PATCH", t.clone(), Some(r#"{"events_per_sec":1}"#)),
        ("DELETE", t.clone(), None),
        ("POST", format!("{t}/keys"), Some(r#"{"scopes":["read"]}"#)),
        ("GET", format!("{t}/keys"), None),
        ("DELETE", format!("{t}/keys/{victim_key_id}"), None),
    ] {
        routes.push(Route {
            method,
            path,
            body,
            scope: "admin",
        });
    }
    let catalog_before = std::fs::read_to_string(s.data_dir().join("catalog.json")).unwrap();
    let end_before = s.log_end().await;

    let malformed = "eddy_ThisIsNotAValidKeyChecksumXXXXXXXXXXXXXXXXXXXXXX";
    let unknown = "some-random-bearer-token-nobody-issued-0123456789";
    for r in &routes {
        let mut cases: Vec<(&str, Option<&str>, StatusCode)> = vec![
            ("no key", None, StatusCode::UNAUTHORIZED),
            ("malformed", Some(malformed), StatusCode::UNAUTHORIZED),
            ("unknown", Some(unknown), StatusCode::UNAUTHORIZED),
            ("revoked", Some(&revoked), StatusCode::UNAUTHORIZED),
        ];
        match r.scope {
            "write" => cases.push(("read-only key", Some(&read_only), StatusCode::FORBIDDEN)),
            "read" => cases.push(("write-only key", Some(&write_only), StatusCode::FORBIDDEN)),
            _ => {
                cases.push(("tenant key", Some(&victim_key), StatusCode::FORBIDDEN));
                cases.push((
                    "other tenant's key",
                    Some(&other_key),
                    StatusCode::FORBIDDEN,
                ));
            }
        }
        for (what, key, want) in cases {
            let (st, v) = s.request(r.method, &r.path, key, r.body).await;
            assert_eq!(st, want, "{} {} with {what}: {v}", r.method, r.path);
            assert!(
                v["error"].is_string() && v["message"].is_string(),
                "structured error: {v}"
            );
        }
        // Also via `Authorization: Bearer`.
        let resp = s
            .client
            .request(r.method.parse().unwrap(), format!("{}{}", s.url, r.path))
            .header("authorization", format!("Bearer {unknown}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    }
    assert_eq!(
        s.log_end().await,
        end_before,
        "no rejected request wrote to the log"
    );
    assert_eq!(
        std::fs::read_to_string(s.data_dir().join("catalog.json")).unwrap(),
        catalog_before,
        "nor to the catalog"
    );

    // Another tenant's valid key only ever reaches its own tenant.
    let (st, _) = s
        .post(
            "/api/v1/events",
            &other_key,
            r#"{"type":"x","tenant":"victim","tenant_id":"victim"}"#,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, victim_stats) = s.get("/stats", &victim_key).await;
    let (_, other_stats) = s.get("/stats", &other_key).await;
    assert_eq!(victim_stats["since_start"]["events_accepted"], 0);
    assert_eq!(other_stats["since_start"]["events_accepted"], 1);
    assert_eq!(victim_stats["tenant_id"], victim.as_str());
    // The right keys do work.
    assert_eq!(
        s.post("/api/v1/events", &victim_key, ev_body).await.0,
        StatusCode::OK
    );
    assert_eq!(s.get("/stats", &read_only).await.0, StatusCode::OK);
    assert_eq!(s.get(&t, &a).await.0, StatusCode::OK);
}
