//! Delivers due reminders through the messaging bridges: the route a bridge put in the
//! message that set the reminder (`{"bridge", "destination"}`) names where it goes, and the
//! dispatcher journals it in its outbox before sending, so it survives a restart too.

use troupe_actors::bridge::dispatch::Dispatcher;
use troupe_actors::bridge::{Delivery, Destination};
use troupe_skills::builtin::{Reminder, ReminderSink};

pub(crate) struct BridgeReminders {
    dispatcher: Dispatcher,
}

impl BridgeReminders {
    pub(crate) fn new(dispatcher: Dispatcher) -> Self {
        Self { dispatcher }
    }
}

#[async_trait::async_trait]
impl ReminderSink for BridgeReminders {
    async fn deliver(&self, reminder: &Reminder) -> Result<(), String> {
        let bridge = reminder.route["bridge"]
            .as_str()
            .ok_or("the reminder names no bridge")?;
        let destination: Destination =
            serde_json::from_value(reminder.route["destination"].clone())
                .map_err(|error| format!("the reminder's destination is unreadable: {error}"))?;
        let delivery = Delivery {
            // The reminder's id: delivering it again after a crash is recognised.
            reply_id: reminder.id.clone(),
            destination,
            text: format!("⏰ Reminder: {}", reminder.text),
        };
        self.dispatcher
            .send(bridge, delivery)
            .await
            .map_err(|error| error.to_string())
    }
}
