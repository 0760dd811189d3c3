//! Wrappers that add behaviour to any store, like `object_store`'s and `OpenDAL`'s layers.

mod cache;
mod retry;
mod timeout;

pub use cache::CachingStore;
pub use retry::{RetryConfig, RetryStore};
pub use timeout::{DEFAULT_PER_CALL_TIMEOUT, DEFAULT_TOTAL_TIMEOUT, TimeoutConfig, TimeoutStore};
