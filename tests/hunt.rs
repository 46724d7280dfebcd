//! The treasure hunt on a small data set: every strategy finds the right
//! file, the first hit cancels the rest, the data set is reused when it
//! matches.

mod common;

use std::cell::Cell;
use std::time::Duration;

use common::*;
use procvisor::demo::hunt::{self, DataSet};

fn data_set(dir: &std::path::Path, seed: u64) -> DataSet {
    DataSet::prepare(dir, 300, 20, seed, &|_| {}).unwrap().0
}

#[test]
fn every_strategy_finds_the_treasure() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = data_set(tmp.path(), 11);
    let sup = start(config(2).cancel_grace(Duration::from_secs(5)));
    for full_scan in [false, true] {
        let none = |_| {};
        let reports = [
            hunt::sequential(&ds, full_scan, &none).unwrap(),
            hunt::threads(&ds, full_scan, 3, &none).unwrap(),
            hunt::async_tokio(&ds, full_scan, 16, &none).unwrap(),
            hunt::procvisor(&sup, &ds, full_scan, 7, &none).unwrap(),
        ];
        for r in &reports {
            assert_eq!(r.found, Some(ds.treasure), "{} missed it", r.strategy);
            if full_scan {
                assert_eq!(
                    r.files, ds.files,
                    "{} skipped files in a full scan",
                    r.strategy
                );
            }
        }
        // Sequential stops right at the treasure.
        assert_eq!(
            reports[0].files,
            if full_scan { ds.files } else { ds.treasure + 1 }
        );
    }
}

#[test]
fn the_first_hit_cancels_the_rest_and_leaves_no_job_running() {
    let tmp = tempfile::tempdir().unwrap();
    // Seed 3 puts the treasure early, so most chunks are still to come.
    let ds = DataSet::prepare(tmp.path(), 400, 20, 3, &|_| {}).unwrap().0;
    assert!(ds.treasure < 200, "treasure at {}", ds.treasure);
    let sup = start(config(2).cancel_grace(Duration::from_secs(5)));
    let r = hunt::procvisor(&sup, &ds, false, 5, &|_| {}).unwrap();
    assert_eq!(r.found, Some(ds.treasure));
    assert!(r.files < ds.files, "read {} of {} files", r.files, ds.files);
    // Queued chunks are gone at once; a running one stops at its next file.
    assert_eq!(sup.snapshot_blocking().unwrap().queued(), 0);
    let idle = eventually(Duration::from_secs(5), || {
        let snap = sup.snapshot_blocking().unwrap();
        snap.workers
            .iter()
            .all(|w| w.running.is_none() && w.held == 0)
    });
    assert!(idle, "{:?}", sup.snapshot_blocking().unwrap().workers);
    let snap = sup.snapshot_blocking().unwrap();
    assert!(snap.counts.cancelled > 0);
    assert_eq!(snap.counts.ended(), snap.counts.submitted);
}

#[test]
fn a_matching_data_set_is_reused_and_another_seed_rebuilds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let written = Cell::new(0);
    let count = |_| written.set(written.get() + 1);
    let (a, created) = DataSet::prepare(tmp.path(), 50, 5, 1, &count).unwrap();
    assert!(created);
    assert_eq!(written.get(), 50);
    let (b, created) = DataSet::prepare(tmp.path(), 50, 5, 1, &count).unwrap();
    assert!(!created);
    assert_eq!((a, written.get()), (b, 50));
    let (c, created) = DataSet::prepare(tmp.path(), 50, 5, 99, &count).unwrap();
    assert!(created);
    // The files say what the manifest says.
    let treasure =
        std::fs::read_to_string(procvisor::stock::hunt::file_path(tmp.path(), c.treasure)).unwrap();
    assert_eq!(treasure, "Treasure\n".repeat(5));
    let other = (c.treasure + 1) % 50;
    let plain =
        std::fs::read_to_string(procvisor::stock::hunt::file_path(tmp.path(), other)).unwrap();
    assert_eq!(plain, "Not a treasure\n".repeat(5));
}

#[test]
fn hunt_writes_only_into_folders_it_made_never_through_links_and_one_at_a_time() {
    use procvisor::stock::hunt::file_path;
    let tmp = tempfile::tempdir().unwrap();

    // A folder with someone else's files is refused, and left as it was.
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    std::fs::write(file_path(&foreign, 0), "precious").unwrap();
    let e = DataSet::prepare(&foreign, 5, 2, 1, &|_| {}).unwrap_err();
    assert!(e.to_string().contains("hunt did not create it"), "{e}");
    assert!(DataSet::lock(&foreign).is_err());
    assert_eq!(
        std::fs::read_to_string(file_path(&foreign, 0)).unwrap(),
        "precious"
    );
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 2);

    // A link planted where a data file goes is replaced, never written
    // through: its target is untouched.
    let ours = tmp.path().join("ours");
    DataSet::prepare(&ours, 5, 2, 1, &|_| {}).unwrap();
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, "do not touch").unwrap();
    std::fs::remove_file(file_path(&ours, 3)).unwrap();
    std::os::unix::fs::symlink(&victim, file_path(&ours, 3)).unwrap();
    let (ds, created) = DataSet::prepare(&ours, 5, 2, 2, &|_| {}).unwrap();
    assert!(created);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "do not touch");
    assert!(!std::fs::symlink_metadata(file_path(&ours, 3))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(ds.dir, ours);

    // A folder that is itself a link is refused.
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&ours, &link).unwrap();
    assert!(DataSet::prepare(&link, 5, 2, 1, &|_| {}).is_err());

    // Two hunts on one folder: the second is told so.
    let held = DataSet::lock(&ours).unwrap();
    let e = DataSet::lock(&ours).unwrap_err();
    assert!(e.to_string().contains("another hunt"), "{e}");
    drop(held);

    // Clean removes what hunt wrote, and the folder.
    assert!(DataSet::clean(&ours).unwrap() >= 6);
    assert!(!ours.exists());
    assert!(DataSet::clean(&foreign).is_err());
    assert!(foreign.join("notes.txt").exists());
}
