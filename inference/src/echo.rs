//! `echo`: answers instantly with the user's last message. For benchmarks, and for a first
//! run before any model is configured.

use troupe_actors::{
    ChatRequest, Completion, DeltaSink, ModelProvider, ProviderError, ProviderInfo, Role,
};

#[derive(Debug)]
pub struct EchoProvider {
    info: ProviderInfo,
}

impl EchoProvider {
    pub fn new(name: &str) -> Self {
        Self {
            info: ProviderInfo {
                name: name.to_owned(),
                kind: "echo".into(),
                model: "echo".into(),
            },
        }
    }
}

#[async_trait::async_trait]
impl ModelProvider for EchoProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn complete(
        &self,
        request: &ChatRequest,
        deltas: &DeltaSink,
    ) -> Result<Completion, ProviderError> {
        let text = request
            .messages
            .iter()
            .rev()
            .find(|message| message.role == Role::User)
            .map(|message| message.content.to_string())
            .unwrap_or_default();
        if request.stream {
            deltas.push(&text);
        }
        Ok(Completion::text(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_actors::ChatMessage;

    #[tokio::test]
    async fn echoes_the_last_user_message() {
        let request = ChatRequest {
            messages: vec![
                ChatMessage::new(Role::User, "first"),
                ChatMessage::new(Role::Assistant, "first"),
                ChatMessage::new(Role::User, "second"),
            ],
            stream: true,
            ..ChatRequest::default()
        };
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink_seen = seen.clone();
        let sink = DeltaSink::new(move |text| sink_seen.lock().unwrap().push_str(text));
        let completion = EchoProvider::new("e")
            .complete(&request, &sink)
            .await
            .unwrap();
        assert_eq!(completion.text, "second");
        assert_eq!(*seen.lock().unwrap(), "second");
    }
}
