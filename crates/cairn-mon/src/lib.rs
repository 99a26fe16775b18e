pub mod auth;
pub mod commands;
pub mod raft;
pub mod service;
