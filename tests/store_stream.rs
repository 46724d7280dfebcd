//! The store's event stream against a real server: every event read once,
//! across pages and past a transaction that commits late. It holds a
//! transaction open on purpose, which holds back every stream reader of
//! the same server, so it has a server (a test program) of its own.

mod pg;

#[test]
fn the_event_stream_reads_each_event_once_across_pages_and_a_late_commit() {
    pg::runtime().block_on(async {
        let Some((store, url)) = pg::migrated("stream").await else {
            return;
        };
        let cursor_at_start = store.event_cursor_now().await.unwrap();
        let insert = |from: i64, to: i64| {
            format!(
                "INSERT INTO procvisor_events (job_id, event, terminal, queue, kind, priority, \
                 lease, attempt, evictions, reclaims) \
                 SELECT g, 'retrying', false, 'default', 'noop', 5, 1, 1, 0, 0 \
                 FROM generate_series({from}, {to}) g"
            )
        };
        // A transaction that writes an event and stays open: it takes the
        // first id, and commits after everything else.
        let (late, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        late.batch_execute(&format!("BEGIN; {}", insert(0, 0)))
            .await
            .unwrap();
        // 12,000 more in three committed transactions: more than two of
        // the stream's pages.
        let (other, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        for k in 0..3 {
            other
                .batch_execute(&insert(1 + k * 4000, (k + 1) * 4000))
                .await
                .unwrap();
        }
        // The open transaction holds the stream back: nothing after it is
        // read yet, so nothing is read out of order.
        let mut cursor = cursor_at_start.clone();
        assert!(store.next_events(&mut cursor).await.unwrap().is_empty());
        late.batch_execute("COMMIT").await.unwrap();
        let mut seen = Vec::new();
        loop {
            let page = store.next_events(&mut cursor).await.unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 5000, "a page of {} events", page.len());
            seen.extend(page.into_iter().map(|e| e.job_id));
        }
        // The late transaction began first, so its event comes first.
        assert_eq!(seen.first(), Some(&0));
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(seen.len(), 12_001, "each event read once");
        assert_eq!(sorted, (0..=12_000).collect::<Vec<i64>>());
        // From the start of the table, the same events.
        assert_eq!(pg::all_events(&store).await.len(), 12_001);
    });
}
