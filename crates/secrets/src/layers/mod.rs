//! Wrappers that add behaviour to any store, like `object_store`'s and `OpenDAL`'s layers.

mod cache;
mod retry;

pub use cache::CachingStore;
pub use retry::{RetryConfig, RetryStore};
