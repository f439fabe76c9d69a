//! Delivers due reminders where the person asked for them: through a messaging bridge (the
//! route the bridge put in the message: `{"bridge", "destination"}`; the dispatcher journals
//! it in its outbox before sending), or to their open web chats (`{"websocket": sender}`; a
//! person who is not connected gets it when they next connect, the reminder waits until then).

use serde_json::json;
use troupe_actors::bridge::dispatch::Dispatcher;
use troupe_actors::bridge::{Delivery, Destination};
use troupe_actors::message::unix_now;
use troupe_skills::builtin::{NotDelivered, Reminder, ReminderSink};

use crate::gateway::Clients;

pub(crate) struct ReminderDelivery {
    dispatcher: Dispatcher,
    clients: Clients,
}

impl ReminderDelivery {
    pub(crate) fn new(dispatcher: Dispatcher, clients: Clients) -> Self {
        Self {
            dispatcher,
            clients,
        }
    }

    async fn through_bridge(
        &self,
        bridge: &str,
        reminder: &Reminder,
        text: String,
    ) -> Result<(), NotDelivered> {
        let destination: Destination =
            serde_json::from_value(reminder.route["destination"].clone())
                .map_err(NotDelivered::Destination)?;
        let delivery = Delivery {
            // The reminder's id: delivering it again after a crash is recognised.
            reply_id: reminder.id.clone(),
            destination,
            text,
            spoken: false,
        };
        Ok(self.dispatcher.send(bridge, delivery).await?)
    }
}

#[async_trait::async_trait]
impl ReminderSink for ReminderDelivery {
    async fn deliver(&self, reminder: &Reminder) -> Result<(), NotDelivered> {
        let text = format!("⏰ Reminder: {}", reminder.text);
        if let Some(bridge) = reminder.route["bridge"].as_str() {
            return self.through_bridge(bridge, reminder, text).await;
        }
        if let Some(sender) = reminder.route["websocket"].as_str() {
            let frame = json!({"type": "notification", "id": reminder.id, "payload": text,
                "timestamp": unix_now()});
            return if self.clients.deliver(sender, &frame.to_string()).await {
                Ok(())
            } else {
                Err(NotDelivered::NotConnected(sender.to_owned()))
            };
        }
        Err(NotDelivered::NoRoute)
    }
}
