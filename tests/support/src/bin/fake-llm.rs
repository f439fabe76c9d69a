//! `fake-llm [ADDRESS]`: runs the OpenAI-compatible/Anthropic test double on its own, answering
//! every request instantly with `echo: <text>`. Used by benchmarks to measure Troupe, not a model.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".into());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("fake-llm listening on http://{}/v1", listener.local_addr()?);
    troupe_testkit::fake_llm::serve_forever(listener).await;
    Ok(())
}
