//! weft-model: the first, pure stage of weft.
pub mod net;
pub mod resources;
pub mod selector;
pub mod yaml;
