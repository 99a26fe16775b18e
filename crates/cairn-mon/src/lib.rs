pub mod raft;
pub mod commands;
pub mod service;
