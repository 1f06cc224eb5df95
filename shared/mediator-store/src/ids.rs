//! Identifiers of stored records: [`ConnectionId`] and [`MessageId`].
//!
//! Both are text newtypes so that a connection id cannot be passed where a message id belongs.
//! New ids are random UUID v4 strings; ids read from the wire (a client's `message_id_list`) are
//! taken as they come, without validation, because an unknown id must simply match nothing.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new random id (UUID v4, hyphenated lower case).
            pub fn generate() -> Self {
                Self(Uuid::new_v4().to_string())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

text_id!(
    /// The id of a DIDComm connection between the mediator and one client (a UUID v4 when the
    /// mediator made it). It names the connection's record, its mediation, its keylist and its
    /// queue.
    ConnectionId
);

text_id!(
    /// The id of a queued message: the `@id` of its attachment in a pickup `delivery`, and what
    /// the client lists in `messages-received`.
    MessageId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_uuid_v4_and_serialise_as_plain_strings() {
        let id = MessageId::generate();
        let uuid = Uuid::parse_str(id.as_str()).expect("a uuid");
        assert_eq!(uuid.get_version_num(), 4);
        assert_ne!(id, MessageId::generate());
        let json = serde_json::to_string(&ConnectionId::from("abc")).expect("serialise");
        assert_eq!(json, "\"abc\"");
    }
}
