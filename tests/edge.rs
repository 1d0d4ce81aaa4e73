//! The edge against the real stack: redirect rules, the link API, API keys, rate limits, bad
//! input, and two edges sharing one Redis and Kafka.

mod common;

use std::time::Duration;

use common::{KEY, READ_KEY, TestEnv, api, create_link, create_link_with, eventually, free_port, http};
use reqwest::Method;

async fn get(env: &TestEnv, path: &str) -> reqwest::Response {
    http().get(format!("{}{path}", env.edge_url())).send().await.unwrap()
}

fn location(response: &reqwest::Response) -> &str {
    response.headers()["location"].to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_redirect_rule_answers_as_configured() {
    let env = TestEnv::new("rules");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let _processor = env.spawn_processor();

    for status in [301u16, 302, 307, 308] {
        let link =
            create_link_with(&env, serde_json::json!({"url": "https://example.com/s", "redirect_status": status}))
                .await;
        let response = get(&env, &format!("/{}", link["code"].as_str().unwrap())).await;
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(location(&response), "https://example.com/s");
        assert_eq!(response.headers()["cache-control"], "private, max-age=0");
    }

    let passthrough = create_link_with(
        &env,
        serde_json::json!({"url": "https://example.com/p?a=1", "passthrough": true, "utm": {"source": "news"}}),
    )
    .await;
    let response = get(&env, &format!("/{}?a=2&b=3", passthrough["code"].as_str().unwrap())).await;
    assert_eq!(location(&response), "https://example.com/p?a=2&utm_source=news&b=3");
    let plain = create_link_with(&env, serde_json::json!({"url": "https://example.com/q"})).await;
    let response = get(&env, &format!("/{}?a=2", plain["code"].as_str().unwrap())).await;
    assert_eq!(location(&response), "https://example.com/q", "no passthrough unless asked for");

    let expired = create_link_with(
        &env,
        serde_json::json!({"url": "https://example.com/e", "expires_at": "2020-01-01T00:00:00Z"}),
    )
    .await;
    let response = get(&env, &format!("/{}", expired["code"].as_str().unwrap())).await;
    assert_eq!(response.status(), 410);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "expired");
    let with_fallback = create_link_with(
        &env,
        serde_json::json!({"url": "https://example.com/e", "expires_at": "2020-01-01T00:00:00Z", "fallback_url": "https://example.com/sorry"}),
    )
    .await;
    let response = get(&env, &format!("/{}", with_fallback["code"].as_str().unwrap())).await;
    assert_eq!((response.status().as_u16(), location(&response)), (302, "https://example.com/sorry"));

    let disabled = create_link_with(&env, serde_json::json!({"url": "https://example.com/d"})).await;
    let code = disabled["code"].as_str().unwrap();
    assert_eq!(get(&env, &format!("/{code}")).await.status(), 302);
    let response = api(Method::DELETE, format!("{}/api/links/{code}", env.edge_url())).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        eventually(Duration::from_secs(5), || async { get(&env, &format!("/{code}")).await.status() == 404 }).await,
        "a disabled link answers 404"
    );

    assert_eq!(get(&env, "/neverCreated").await.status(), 404);
    let metrics = http().get(env.edge_metrics_url()).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("runnel_edge_redirects_total{result=\"not_found\"} 1"),
        "orphan visits are counted:\n{metrics}"
    );
    assert_eq!(get(&env, "/metrics").await.status(), 404, "metrics are not served with the traffic");

    // HEAD answers like GET, and its click event says HEAD (so reports can leave it out).
    let head_link = create_link_with(&env, serde_json::json!({"url": "https://example.com/h"})).await;
    let response =
        http().head(format!("{}/{}", env.edge_url(), head_link["code"].as_str().unwrap())).send().await.unwrap();
    assert_eq!((response.status().as_u16(), location(&response)), (302, "https://example.com/h"));
    let id: u64 = response.headers()["x-request-id"].to_str().unwrap().parse().unwrap();
    let stored = eventually(Duration::from_secs(60), || async {
        env.ch_u64(&format!("SELECT count() FROM clicks WHERE event_id = {id}")).await == 1
    })
    .await;
    assert!(stored, "the HEAD click is stored");
    let head =
        env.ch_u64(&format!("SELECT toUInt64(method = 'HEAD' AND is_bot = 1) FROM clicks WHERE event_id = {id}")).await;
    assert_eq!(head, 1, "a HEAD click is marked and left out of human clicks");
}

/// A click event carries the request's user agent, referrer, language and CDN country (the
/// first header of each name), on the edge's own HTTP/1.1 path and on a connection hyper serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_event_carries_the_headers_of_its_request_on_both_http_paths() {
    let mut env = TestEnv::new("clickhdr");
    env.set("RUNNEL_COUNTRY_HEADER", "CF-IPCountry");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let (code, link_id) = create_link(&env, "https://example.com/headers").await;
    let click = |client: &reqwest::Client, country: &'static str| {
        client
            .get(format!("{}/{code}?utm_source=x", env.edge_url()))
            .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0")
            .header("User-Agent", "a second one")
            .header("referer", "https://www.google.com/")
            .header("accept-language", "de-CH,de;q=0.9")
            .header("cf-ipcountry", country)
            .send()
    };
    // A fresh connection: the edge's own path.
    let fresh = http();
    let own: u64 = click(&fresh, "ch").await.unwrap().headers()["x-request-id"].to_str().unwrap().parse().unwrap();
    // A connection whose first request was not a redirect is served by hyper to its end.
    let handed_off = http();
    assert_eq!(handed_off.get(format!("{}/healthz", env.edge_url())).send().await.unwrap().status(), 200);
    let response = click(&handed_off, "XX").await.unwrap();
    assert_eq!(response.status(), 302);
    let hyper: u64 = response.headers()["x-request-id"].to_str().unwrap().parse().unwrap();

    let topic = format!("{}clicks", env.topic_prefix());
    let mut events = Vec::new();
    let found = eventually(Duration::from_secs(30), || {
        let topic = topic.clone();
        events = common::read_topic(&common::kafka_brokers(), &topic, 12, Duration::from_secs(2))
            .iter()
            .flat_map(|m| {
                let lines = events::click_batch::to_lines(rdkafka::Message::payload(m).unwrap_or_default()).unwrap();
                events::decode_ndjson::<events::ClickEvent>(&lines).map(Result::unwrap).collect::<Vec<_>>()
            })
            .collect::<Vec<_>>();
        let n = events.len();
        async move { n == 2 }
    })
    .await;
    assert!(found, "two click events on the topic: {events:?}");
    for (id, country) in [(own, "CH"), (hyper, "")] {
        let event = events.iter().find(|e| e.id == id).expect("the redirect's request id is its event id");
        assert_eq!(event.link_id, link_id);
        assert_eq!(event.code, code);
        assert_eq!(event.ua, "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0", "the first user agent counts");
        assert_eq!(event.referrer, "https://www.google.com/");
        assert_eq!(event.lang, "de-CH,de;q=0.9");
        assert_eq!(event.country, country, "XX is no country");
        assert_eq!(event.ip, "127.0.0.0", "truncated to its /24");
        assert_eq!(event.q, "utm_source=x");
    }

    // What the redirect path counts per thread is all in /metrics (crate::hot_metrics): the
    // latency samples too, though fewer than a thread's batch of them.
    let text = http().get(env.edge_metrics_url()).send().await.unwrap().text().await.unwrap();
    for (name, expected) in [
        ("runnel_edge_clicks_produced_total", 2),
        ("runnel_edge_redirects_total{result=\"found\"}", 2),
        ("runnel_edge_requests_total{route=\"/{code}\",status_class=\"3xx\"}", 2),
        ("runnel_edge_request_duration_seconds_count{route=\"/{code}\"}", 2),
    ] {
        assert_eq!(common::metric(&text, name), expected, "{name}:\n{text}");
    }
    let hits = common::metric(&text, "runnel_edge_link_lookups_total{tier=\"memory\",result=\"hit\"}");
    let misses = common::metric(&text, "runnel_edge_link_lookups_total{tier=\"memory\",result=\"miss\"}");
    assert_eq!(hits + misses, 2, "each redirect looked its link up once:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_can_be_read_listed_changed_and_disabled_through_the_api() {
    let env = TestEnv::new("crud");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let base = format!("{}/api/links", env.edge_url());
    let mut codes = Vec::new();
    for i in 0..5 {
        let link = create_link_with(
            &env,
            serde_json::json!({"url": format!("https://example.com/{i}"), "tags": ["t"], "utm": {"campaign": "c"}}),
        )
        .await;
        codes.push(link["code"].as_str().unwrap().to_string());
    }
    let created =
        create_link_with(&env, serde_json::json!({"url": "https://example.com/alias", "alias": "my-alias_1"})).await;
    assert_eq!(created["code"], "my-alias_1");
    assert_eq!(created["short_url"], format!("{}/my-alias_1", env.edge_url()));
    codes.push("my-alias_1".into());

    let mut listed = Vec::new();
    let mut url = format!("{base}?limit=2");
    loop {
        let page: serde_json::Value = api(Method::GET, &url).send().await.unwrap().json().await.unwrap();
        listed.extend(page["links"].as_array().unwrap().iter().map(|l| l["code"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(cursor) => url = format!("{base}?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(listed, codes, "every link once, in creation order");

    let reader = http().get(format!("{base}/my-alias_1")).bearer_auth(READ_KEY).send().await.unwrap();
    assert_eq!(reader.status(), 200);
    let response = api(Method::PATCH, format!("{base}/my-alias_1"))
        .json(&serde_json::json!({"url": "https://example.com/changed", "redirect_status": 308, "expires_at": "2099-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let changed: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        (changed["url"].as_str(), changed["redirect_status"].as_u64()),
        (Some("https://example.com/changed"), Some(308))
    );
    assert_eq!(changed["expires_at"], "2099-01-01T00:00:00.000Z");
    assert!(changed["version"].as_u64() > created["version"].as_u64());
    let response = get(&env, "/my-alias_1").await;
    assert_eq!((response.status().as_u16(), location(&response)), (308, "https://example.com/changed"));
    let cleared: serde_json::Value = api(Method::PATCH, format!("{base}/my-alias_1"))
        .json(&serde_json::json!({"expires_at": null}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(cleared.get("expires_at").is_none(), "null clears a field: {cleared}");
    assert_eq!(cleared["url"], "https://example.com/changed", "absent fields stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_many_concurrent_creators_of_one_alias_exactly_one_gets_201() {
    let env = TestEnv::new("race");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let second_port = free_port();
    let _second = env.spawn_edge_at(second_port).await;
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            // Half the creators go through each edge.
            let url = if i % 2 == 0 {
                format!("{}/api/links", env.edge_url())
            } else {
                format!("http://127.0.0.1:{second_port}/api/links")
            };
            tokio::spawn(async move {
                api(Method::POST, url)
                    .json(&serde_json::json!({"url": format!("https://example.com/{i}"), "alias": "contested"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 23, "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_written_on_one_edge_works_on_another_at_once_and_changes_reach_its_cache() {
    let env = TestEnv::new("twoedges");
    env.prepare();
    let _a = env.spawn_edge().await;
    let b_port = free_port();
    let _b = env.spawn_edge_at(b_port).await;
    let b = format!("http://127.0.0.1:{b_port}");

    let (code, _) = create_link(&env, "https://example.com/first").await;
    // Read-your-writes: the other edge redirects right after the 201.
    let response = http().get(format!("{b}/{code}")).send().await.unwrap();
    assert_eq!((response.status().as_u16(), location(&response)), (302, "https://example.com/first"));

    // Edge B has the link cached now; a change made on A must reach B's cache within a second
    // (well inside B's 5 s cache TTL, so only the invalidation can explain it).
    let patched = api(Method::PATCH, format!("{}/api/links/{code}", env.edge_url()))
        .json(&serde_json::json!({"url": "https://example.com/second"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let seen = eventually(Duration::from_secs(1), || async {
        let response = http().get(format!("{b}/{code}")).send().await.unwrap();
        location(&response) == "https://example.com/second"
    })
    .await;
    assert!(seen, "edge B still redirects to the old destination after 1 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after_and_ratelimit_headers() {
    let mut env = TestEnv::new("limits");
    env.set("RUNNEL_RATE_LIMIT_LINKS_PER_MIN", "3");
    env.set("RUNNEL_RATE_LIMIT_REDIRECTS_PER_MIN", "5");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..5 {
        let response = api(Method::GET, format!("{}/api/links", env.edge_url())).send().await.unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            refused = Some(response);
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let refused = refused.unwrap();
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "retry-after {retry_after}");
    assert_eq!(refused.headers()["ratelimit-limit"], "3");
    assert_eq!(refused.headers()["ratelimit-remaining"], "0");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Another key's budget is its own.
    assert_eq!(
        http().get(format!("{}/api/links", env.edge_url())).bearer_auth(READ_KEY).send().await.unwrap().status(),
        200
    );

    // Redirects are limited per client IP.
    let redirects: Vec<u16> = {
        let mut s = Vec::new();
        for _ in 0..7 {
            s.push(get(&env, "/whatever").await.status().as_u16());
        }
        s
    };
    assert_eq!(redirects, [404, 404, 404, 404, 404, 429, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_json_error_naming_the_problem() {
    let env = TestEnv::new("badinput");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let links = format!("{}/api/links", env.edge_url());
    let post = || api(Method::POST, &links);
    let json = |v: serde_json::Value| post().json(&v);
    create_link_with(&env, serde_json::json!({"url": "https://example.com/", "alias": "taken-one"})).await;

    let cases: Vec<(reqwest::RequestBuilder, u16, &str, &str)> = vec![
        (json(serde_json::json!({"url": "ftp://example.com/x"})), 422, "invalid_url", "scheme"),
        (json(serde_json::json!({"url": "/relative"})), 422, "invalid_url", "absolute"),
        (json(serde_json::json!({"url": "https://exa mple.com"})), 422, "invalid_url", "whitespace"),
        (
            json(serde_json::json!({"url": format!("https://example.com/{}", "a".repeat(3000))})),
            422,
            "invalid_url",
            "2048",
        ),
        (json(serde_json::json!({"destination": "https://example.com"})), 422, "invalid_field", "destination"),
        (json(serde_json::json!({"url": "https://e.com", "alias": "a/b"})), 422, "invalid_field", "alias"),
        (json(serde_json::json!({"url": "https://e.com", "alias": "metrics"})), 422, "invalid_field", "reserved"),
        (json(serde_json::json!({"url": "https://e.com", "alias": "taken-one"})), 409, "alias_taken", "taken-one"),
        (
            json(serde_json::json!({"url": "https://e.com", "redirect_status": 303})),
            422,
            "invalid_field",
            "redirect_status",
        ),
        (json(serde_json::json!({"url": "https://e.com", "expires_at": "soon"})), 422, "invalid_field", "expires_at"),
        (
            json(serde_json::json!({"url": "https://e.com", "fallback_url": "javascript:alert(1)"})),
            422,
            "invalid_field",
            "fallback_url",
        ),
        (json(serde_json::json!({"url": "https://e.com", "tags": [""]})), 422, "invalid_field", "tags"),
        (post().header("content-type", "application/json").body("{\"url\": "), 400, "malformed_json", ""),
        (post().body("url=https://example.com"), 415, "unsupported_media_type", "application/json"),
        (
            post()
                .header("content-type", "application/json")
                .body(format!("{{\"url\": \"https://e.com/{}\"}}", "a".repeat(20_000))),
            413,
            "body_too_large",
            "too large",
        ),
        (http().post(&links).json(&serde_json::json!({"url": "https://e.com"})), 401, "unauthorized", "API key"),
        (
            http().post(&links).bearer_auth("rk_wrong").json(&serde_json::json!({"url": "https://e.com"})),
            401,
            "unauthorized",
            "unknown",
        ),
        (
            http().post(&links).bearer_auth(READ_KEY).json(&serde_json::json!({"url": "https://e.com"})),
            403,
            "forbidden",
            "links:write",
        ),
        (api(Method::GET, format!("{links}?limit=0")), 400, "invalid_parameter", "limit"),
        (api(Method::GET, format!("{links}/nope")), 404, "not_found", "link"),
        (api(Method::GET, format!("{links}/nope/stats")), 404, "not_found", "link"),
        (http().get(format!("{}/doesNotExist", env.edge_url())), 404, "not_found", "link"),
        (http().get(format!("{}/{}", env.edge_url(), "x".repeat(200))), 404, "not_found", "link"),
        (http().get(format!("{}/{}", env.edge_url(), "x".repeat(3000))), 414, "uri_too_long", "2048"),
        (http().get(format!("{}/a/b/c", env.edge_url())), 404, "not_found", "route"),
    ];
    for (request, status, code, needle) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status);
        assert!(response.headers().contains_key("x-request-id"), "every response carries a request id");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(needle), "{body} should mention {needle}");
    }
    let _ = KEY;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_of_the_served_openapi_document_exists() {
    let env = TestEnv::new("openapi");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let (code, _) = create_link(&env, "https://example.com/doc").await;
    let doc: serde_json::Value = get(&env, "/api/openapi.json").await.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let url = format!("{}{}", env.edge_url(), path.replace("{code}", &code));
            let response = api(method.to_uppercase().parse().unwrap(), &url)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let no_route = status == 404 && body["error"]["message"] == "no such route";
            assert!(!no_route && status != 405, "{method} {path} is documented but not served ({status} {body})");
        }
    }
    assert!(operations >= 8, "only {operations} operations documented");
}

/// The redirect's fast path (answered before the router) and the router's `/{code}` route give
/// the same answers. A percent-escaped code is the router's (the fast path takes only plain
/// segments), so each case is asked both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redirect_fast_path_answers_exactly_as_the_router_does() {
    let env = TestEnv::new("fastpath");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let links = [
        serde_json::json!({"url": "https://example.com/a", "redirect_status": 308}),
        serde_json::json!({"url": "https://example.com/p?a=1", "passthrough": true, "utm": {"source": "news"}}),
        serde_json::json!({"url": "https://example.com/e", "expires_at": "2020-01-01T00:00:00Z"}),
        serde_json::json!({"url": "https://example.com/e", "expires_at": "2020-01-01T00:00:00Z", "fallback_url": "https://example.com/sorry"}),
    ];
    let mut codes = Vec::new();
    for link in links {
        codes.push(create_link_with(&env, link).await["code"].as_str().unwrap().to_string());
    }
    codes.push("neverCreated".into());
    let requests_3xx = || async {
        let metrics = http().get(env.edge_metrics_url()).send().await.unwrap().text().await.unwrap();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("runnel_edge_requests_total{route=\"/{code}\",status_class=\"3xx\"} "))
            .map_or(0, |n| n.parse::<u64>().unwrap())
    };
    let before = requests_3xx().await;
    let mut redirects = 0;
    for code in &codes {
        let escaped = format!("%{:02X}{}", code.as_bytes()[0], &code[1..]);
        for query in ["", "?a=2&b=3"] {
            let mut answers = Vec::new();
            for path in [format!("/{code}{query}"), format!("/{escaped}{query}")] {
                let response = get(&env, &path).await;
                let headers = response.headers().clone();
                let id = headers.get("x-request-id").map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
                assert!(id.is_some(), "{path} has a request id");
                let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string());
                let status = response.status().as_u16();
                redirects += u64::from(status / 100 == 3);
                let seen = (status, header("location"), header("cache-control"), header("content-type"));
                answers.push((seen, response.text().await.unwrap()));
            }
            assert_eq!(answers[0], answers[1], "/{code}{query}: fast path, then router");
        }
    }
    assert!(redirects >= 12, "the cases include redirects: {redirects}");
    assert!(
        eventually(Duration::from_secs(5), || async { requests_3xx().await - before == redirects }).await,
        "both paths count their redirects under the route template /{{code}}"
    );
    let post = http().post(format!("{}/{}", env.edge_url(), codes[0])).send().await.unwrap();
    assert_eq!(post.status(), 405, "other methods still reach the router");
    assert_eq!(get(&env, "/healthz").await.status(), 200, "routes named like codes are the router's");
}

/// One answer read off a raw connection: status, headers (lower-case names) and body.
struct RawAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Writes `requests` to the edge a few bytes at a time, then reads answers until the edge closes
/// the connection; `heads[i]` says whether answer `i` is to a HEAD (no body).
fn exchange(port: u16, requests: &str, heads: &[bool]) -> Vec<RawAnswer> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for piece in requests.as_bytes().chunks(5) {
        stream.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    let mut data = Vec::new();
    stream.read_to_end(&mut data).expect("the edge closes the connection after `Connection: close`");
    let mut answers = Vec::new();
    let mut rest = &data[..];
    for &head in heads {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(len) = response.parse(rest).unwrap() else { panic!("a cut answer") };
        let headers: Vec<(String, String)> = response
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
            .collect();
        let status = response.code.unwrap();
        let length = headers.iter().find(|(n, _)| n == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
        let body_len = if head { 0 } else { length };
        answers.push(RawAnswer { status, headers, body: rest[len..len + body_len].to_vec() });
        rest = &rest[len + body_len..];
    }
    assert!(rest.is_empty(), "nothing after the last answer: {:?}", String::from_utf8_lossy(rest));
    answers
}

/// `task`'s result, failing the test when it takes over 30 s.
async fn within<T>(what: &str, task: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap_or_else(|_| panic!("{what} took over 30 s"))
        .unwrap()
}

/// The edge's own HTTP/1.1 path (ingest/src/http1.rs) answers plain redirects itself and hands
/// the connection to hyper at its first other request. Pipelined requests, written a few bytes
/// at a time, get their answers in order whichever path answers them; `Connection: close`
/// closes; an idle keep-alive connection does not hold up a shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_across_both_http_paths() {
    let env = TestEnv::new("http1");
    env.prepare();
    let mut edge = env.spawn_edge().await;
    let (code, _) = create_link(&env, "https://example.com/landing").await;
    let port: u16 = env.edge_url().rsplit(':').next().unwrap().parse().unwrap();
    let get = |path: &str, extra: &str| format!("GET {path} HTTP/1.1\r\nHost: e\r\nUser-Agent: test\r\n{extra}\r\n");
    let requests = [
        get(&format!("/{code}"), ""),
        format!("HEAD /{code}?a=1 HTTP/1.1\r\nHost: e\r\n\r\n"),
        get("/neverCreated", "Connection: keep-alive\r\n"),
        // Not a plain redirect: hyper and the router from here on.
        get("/healthz", ""),
        get(&format!("/{code}"), ""),
        "POST /api/links HTTP/1.1\r\nHost: e\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            .to_string(),
        get(&format!("/{code}"), "Connection: close\r\n"),
    ]
    .concat();
    let heads = [false, true, false, false, false, false, false];
    let answers =
        within("the pipelined exchange", tokio::task::spawn_blocking(move || exchange(port, &requests, &heads))).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [302, 302, 404, 200, 302, 401, 302]);
    for i in [0, 1, 4, 6] {
        assert_eq!(answers[i].header("location"), Some("https://example.com/landing"), "answer {i}");
        assert_eq!(answers[i].header("cache-control"), Some("private, max-age=0"), "answer {i}");
        assert_eq!(answers[i].header("content-length"), Some("0"), "answer {i}");
    }
    assert_eq!(answers[1].header("location"), Some("https://example.com/landing"), "HEAD answers as GET");
    let error: serde_json::Value = serde_json::from_slice(&answers[2].body).unwrap();
    assert_eq!(error["error"]["code"], "not_found");
    assert_eq!(answers[2].header("content-type"), Some("application/json"));
    assert_eq!(answers[6].header("connection"), Some("close"));
    let mut ids: Vec<u64> =
        answers.iter().map(|a| a.header("x-request-id").expect("every answer has an id").parse().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), answers.len(), "request ids are distinct");
    assert!(answers.iter().all(|a| a.header("date").is_some_and(|d| d.ends_with(" GMT"))));

    // An HTTP/1.0 request is hyper's: answered, then closed.
    let one = tokio::task::spawn_blocking(move || exchange(port, &format!("GET /{code} HTTP/1.0\r\n\r\n"), &[false]));
    let one = within("the HTTP/1.0 exchange", one).await;
    assert_eq!((one[0].status, one[0].header("location")), (302, Some("https://example.com/landing")));

    // Idle keep-alive connections, one on each path, close at shutdown instead of holding it up.
    let idle = [
        std::net::TcpStream::connect(("127.0.0.1", port)).unwrap(),
        std::net::TcpStream::connect(("127.0.0.1", port)).unwrap(),
    ];
    {
        use std::io::Write;
        (&idle[1]).write_all(b"GET /healthz HTTP/1.1\r\nHost: e\r\n\r\n").unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let status = within("the shutdown", tokio::task::spawn_blocking(move || edge.terminate())).await;
    assert!(status.success(), "the edge exits cleanly: {status:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "shutdown took {:?}", started.elapsed());
    drop(idle);
}

/// An edge whose log cannot be written (its stderr on a full disk) goes on serving and
/// stopping cleanly: log lines are dropped. tracing-subscriber reports a failed write with
/// `eprintln!`, which panics when stderr fails too; the edge used to exit at its first line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_whose_log_cannot_be_written_keeps_serving() {
    let mut env = TestEnv::new("logfull");
    env.prepare();
    env.set("RUST_LOG", "debug"); // a line for every request
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    // No log to show if it fails: reading /dev/full never ends.
    let mut edge = env.spawn_edge_writing_to(env.edge_port, full, env.logs.join("no-log")).await;
    let (code, _) = create_link(&env, "https://example.com/no-log-space").await;
    for _ in 0..50 {
        assert_eq!(get(&env, &format!("/{code}")).await.status(), 302);
    }
    assert_eq!(get(&env, "/no-such-link").await.status(), 404);
    assert!(edge.child.try_wait().unwrap().is_none(), "the edge exited");
    assert!(edge.terminate().success(), "the edge did not stop cleanly");
}

/// Client connections cannot be held open for free: one idle between requests closes after
/// `RUNNEL_IDLE_TIMEOUT_MS`, a request head still incomplete after `RUNNEL_HEADER_TIMEOUT_MS`
/// gets 408 and the connection closes, on the edge's own path as on hyper's; a client that
/// keeps sending in time is served for as long as it likes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_are_closed_after_their_time_outs() {
    use std::io::{Read, Write};
    let mut env = TestEnv::new("timeouts");
    env.set("RUNNEL_IDLE_TIMEOUT_MS", "3000");
    env.set("RUNNEL_HEADER_TIMEOUT_MS", "700");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let (code, _) = create_link(&env, "https://example.com/landing").await;
    let port: u16 = env.edge_url().rsplit(':').next().unwrap().parse().unwrap();
    let connect = move || {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream
    };
    // Reads until the edge closes; how long that took, and what came.
    let until_closed = |mut stream: std::net::TcpStream| {
        let started = std::time::Instant::now();
        let mut data = Vec::new();
        let _ = stream.read_to_end(&mut data);
        (started.elapsed(), String::from_utf8_lossy(&data).into_owned())
    };
    let request = format!("GET /{code} HTTP/1.1\r\nHost: e\r\n\r\n");

    let outcome = tokio::task::spawn_blocking(move || {
        // Never a byte: closed after the idle time-out, without an answer.
        let (idle, idle_data) = until_closed(connect());
        // A head cut short on the edge's own path: 408 after the header time-out.
        let mut slow = connect();
        slow.write_all(format!("GET /{code} HTTP/1.1\r\nHost:").as_bytes()).unwrap();
        let (slow_head, slow_data) = until_closed(slow);
        // One served, then a head cut short on hyper's path (an API request).
        let mut api = connect();
        api.write_all(b"GET /healthz HTTP/1.1\r\nHost: e\r\n\r\nGET /api/links HTTP/1.1\r\nHost:").unwrap();
        let (api_head, api_data) = until_closed(api);
        // Requests 2 s apart, each before the idle time-out: all answered on one connection.
        let mut steady = connect();
        let mut answers = 0;
        for _ in 0..3 {
            steady.write_all(request.as_bytes()).unwrap();
            let mut buf = [0u8; 1024];
            let n = steady.read(&mut buf).unwrap();
            answers += usize::from(buf[..n].starts_with(b"HTTP/1.1 302"));
            std::thread::sleep(Duration::from_millis(2000));
        }
        (idle, idle_data, slow_head, slow_data, api_head, api_data, answers)
    });
    let (idle, idle_data, slow_head, slow_data, api_head, api_data, answers) =
        within("the time-out exchanges", outcome).await;
    assert!(idle >= Duration::from_millis(2900) && idle < Duration::from_secs(8), "idle closed after {idle:?}");
    assert!(idle_data.is_empty(), "nothing is sent to an idle connection: {idle_data:?}");
    assert!(
        slow_head >= Duration::from_millis(600) && slow_head < Duration::from_millis(2500),
        "slow head closed after {slow_head:?}"
    );
    assert!(slow_data.starts_with("HTTP/1.1 408 "), "{slow_data:?}");
    assert!(slow_data.contains("\"request_timeout\""), "{slow_data:?}");
    assert!(api_data.starts_with("HTTP/1.1 200 "), "the first request is answered: {api_data:?}");
    assert!(api_head < Duration::from_secs(8), "hyper closed the slow head after {api_head:?}");
    assert_eq!(answers, 3, "a connection in use stays open");
}
