use super::*;

#[test]
fn backoff_doubles_within_jitter_and_is_capped() {
    let policy = ProviderPolicy {
        base_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(300),
        ..ProviderPolicy::default()
    };
    for _ in 0..50 {
        let first = backoff(&policy, 0);
        assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first));
        let second = backoff(&policy, 1);
        assert!((Duration::from_millis(100)..=Duration::from_millis(200)).contains(&second));
        let capped = backoff(&policy, 10);
        assert!((Duration::from_millis(150)..=Duration::from_millis(300)).contains(&capped));
    }
}

#[test]
fn never_retries_after_text_went_out_or_on_client_errors() {
    let call = PolicyCall::new(
        Arc::new(crate::testing::ScriptedProvider::new("p", Vec::new())),
        ProviderPolicy {
            max_concurrency: 1,
            ..ProviderPolicy::default()
        },
    );
    let server = ProviderError::new(ProviderErrorKind::Server, "p", "x");
    assert!(call.retry_wait(&server, 0, &DeltaSink::discard()).is_some());
    assert!(
        call.retry_wait(&server, 2, &DeltaSink::discard()).is_none(),
        "out of retries"
    );
    let streamed = DeltaSink::discard();
    streamed.push("partial");
    assert!(call.retry_wait(&server, 0, &streamed).is_none());
    let bad = ProviderError::new(ProviderErrorKind::BadRequest, "p", "x");
    assert!(call.retry_wait(&bad, 0, &DeltaSink::discard()).is_none());
    let long_wait = ProviderError::new(ProviderErrorKind::RateLimited, "p", "x")
        .with_retry_after(Some(Duration::from_secs(3600)));
    assert!(
        call.retry_wait(&long_wait, 0, &DeltaSink::discard())
            .is_none()
    );
    let short_wait = ProviderError::new(ProviderErrorKind::RateLimited, "p", "x")
        .with_retry_after(Some(Duration::from_secs(2)));
    assert_eq!(
        call.retry_wait(&short_wait, 0, &DeltaSink::discard()),
        Some(Duration::from_secs(2))
    );
}
