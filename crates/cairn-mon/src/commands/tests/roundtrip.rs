//! CLI words → JSON command (`cairn-cli`'s `moncmd`) → plan, for every example in the brief.

use super::moncmd::argv_to_command;
use super::*;

fn run(f: &mut Fixture, words: &[&str]) -> Result<String> {
    let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    let cmd = argv_to_command(&words)?;
    f.exec(cmd)
}

#[test]
fn every_example_runs_against_the_map() {
    let mut f = Fixture::new();
    let cases: &[(&[&str], &str)] = &[
        (&["-s"], ""),
        (&["status", "-f", "json"], ""),
        (&["osd", "pool", "create", "images", "128"], "pool 'images' created"),
        (
            &["osd", "pool", "application", "enable", "images", "rbd"],
            "enabled application 'rbd' on pool 'images'",
        ),
        (&["osd", "pool", "set", "images", "size", "2"], "set pool 2 size to 2"),
        (&["osd", "pool", "get", "images", "size"], ""),
        (
            &["osd", "pool", "set-quota", "images", "max_bytes", "10G"],
            "set-quota max_bytes = 10737418240 for pool images",
        ),
        (&["osd", "pool", "get-quota", "images"], ""),
        (&["osd", "down", "1"], "marked down osd.1. "),
        (&["osd", "out", "osd.1", "2"], "marked out osd.1. marked out osd.2. "),
        (&["health", "detail"], ""),
        (&["df", "detail"], ""),
        (&["osd", "pool", "ls", "detail"], ""),
        (&["pg", "dump"], "dumped all"),
        (&["mon", "dump"], "dumped monmap epoch 1"),
        (&["quorum_status"], ""),
        (&["mon_status"], ""),
        (&["osd", "lspools"], ""),
        (&["osd", "tree", "--format=json-pretty"], ""),
        (
            &["osd", "pool", "rm", "images", "images", "--yes-i-really-really-mean-it"],
            "pool 'images' removed",
        ),
    ];
    for (words, status) in cases {
        let got = run(&mut f, words).unwrap_or_else(|e| panic!("{words:?}: {e}"));
        assert_eq!(&got, status, "{words:?}");
    }
    assert!(f.map.pool_by_name("images").is_none());
}

#[test]
fn cli_json_format_reaches_the_renderer() {
    let f = Fixture::new();
    let words: Vec<String> = ["df", "--format", "json"].iter().map(|w| w.to_string()).collect();
    let cmd = argv_to_command(&words).unwrap();
    let v = f.json(cmd);
    assert_eq!(v["pools"][0]["name"], "volumes");
}

#[test]
fn cli_bad_pg_num_never_reaches_the_monitor() {
    let words: Vec<String> =
        ["osd", "pool", "create", "volumes", "abc"].iter().map(|w| w.to_string()).collect();
    let e = argv_to_command(&words).unwrap_err();
    assert_eq!(e.errno, errno::EINVAL);
    assert!(
        e.message.contains("abc doesn't represent an int") && e.message.contains("pg_num"),
        "{}",
        e.message
    );
}
