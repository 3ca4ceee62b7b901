//! The machine's plain-HTTP ceiling for `bench/http/run.sh`: an axum handler that returns a
//! constant JSON body the size of an OFREP answer, on the same runtime settings as the server.
//!
//! `cargo run --release -p switchyard-server --example http_ceiling -- 127.0.0.1:18090`

use axum::routing::post;
use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".to_owned());
    let body =
        r#"{"key":"checkout-redesign","value":true,"reason":"TARGETING_MATCH","variant":"on"}"#;
    let app = Router::new().route(
        "/ofrep/v1/evaluate/flags/{key}",
        post(move || async move { ([("content-type", "application/json")], body) }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
