//! Values that are text on the wire and in the table but have a rule: an [`Id`](super::id::Id),
//! an E.164 [`Phone`](super::phone::Phone), a [`Timestamp`](super::time::Timestamp). Each is made
//! only by parsing at the edge (or by this crate), then travels typed; it reads as `&str`
//! wherever text is wanted (keys, JSON, log fields) and is stored exactly as the text it wraps.

/// Declares a newtype over `String`: serialised as its text, read as `&str`, compared with text.
macro_rules! text_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A value this service wrote itself, read back from its table or a queue.
            pub fn stored(value: String) -> Self {
                $name(value)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// Unit tests write values as text.
        #[cfg(test)]
        impl From<&str> for $name {
            fn from(v: &str) -> $name {
                $name(v.to_string())
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl From<&$name> for String {
            fn from(v: &$name) -> String {
                v.0.clone()
            }
        }

        impl From<$name> for serde_json::Value {
            fn from(v: $name) -> serde_json::Value {
                serde_json::Value::String(v.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

pub(crate) use text_newtype;
