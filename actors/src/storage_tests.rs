//! [`Storage`] on a disk that fills up and empties again on command.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::{ReadableTable, StorageBackend};

use super::*;

const ITEMS: TableDefinition<'_, &str, &str> = TableDefinition::new("items");

/// An in-memory disk whose writes fail with "no space left" while it is full. Clones share
/// the bytes, so the store can be reopened on the same contents.
#[derive(Clone, Debug, Default)]
struct FillableDisk {
    bytes: Arc<Mutex<Vec<u8>>>,
    full: Arc<AtomicBool>,
}

impl FillableDisk {
    fn no_space() -> io::Error {
        io::Error::from_raw_os_error(28)
    }

    fn check_space(&self) -> io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            return Err(Self::no_space());
        }
        Ok(())
    }
}

impl StorageBackend for FillableDisk {
    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.bytes).len() as u64)
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let bytes = lock(&self.bytes);
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        bytes
            .get(start..start + len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(io::Error::other)?;
        let mut bytes = lock(&self.bytes);
        if len > bytes.len() {
            self.check_space()?;
        }
        bytes.resize(len, 0);
        Ok(())
    }

    fn sync_data(&self, _eventual: bool) -> io::Result<()> {
        self.check_space()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check_space()?;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let mut bytes = lock(&self.bytes);
        if bytes.len() < start + data.len() {
            bytes.resize(start + data.len(), 0);
        }
        bytes[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }
}

fn prepare(transaction: &WriteTransaction) -> Result<(), redb::TableError> {
    transaction.open_table(ITEMS).map(drop)
}

fn store_on(disk: &FillableDisk) -> Storage {
    let disk = disk.clone();
    Storage::with_backend(
        "test",
        move || redb::Builder::new().create_with_backend(disk.clone()),
        prepare,
    )
    .unwrap()
}

fn put(storage: &Storage, key: &str) -> anyhow::Result<()> {
    storage.run(|database| {
        let transaction = database.begin_write()?;
        transaction.open_table(ITEMS)?.insert(key, "value")?;
        transaction.commit()?;
        Ok::<_, anyhow::Error>(())
    })?
}

fn keys(storage: &Storage) -> Vec<String> {
    storage
        .run(|database| {
            let transaction = database.begin_read()?;
            let table = transaction.open_table(ITEMS)?;
            let mut keys = Vec::new();
            for entry in table.iter()? {
                keys.push(entry?.0.value().to_owned());
            }
            Ok::<_, anyhow::Error>(keys)
        })
        .unwrap()
        .unwrap()
}

/// Waits, at most ten seconds, for the store's health to be `wanted`.
fn wait_for(storage: &Storage, wanted: impl Fn(&StoreHealth) -> bool) -> StoreHealth {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = storage.health();
        if wanted(&health) || Instant::now() > deadline {
            return health;
        }
        std::thread::park_timeout(Duration::from_millis(5));
    }
}

#[test]
fn a_full_disk_makes_the_store_failing_until_space_comes_back_without_reopening_by_hand() {
    let disk = FillableDisk::default();
    let storage = store_on(&disk);
    put(&storage, "before").unwrap();
    assert_eq!(storage.health(), StoreHealth::Writable);

    disk.full.store(true, Ordering::SeqCst);
    assert!(put(&storage, "while-full").is_err());
    let StoreHealth::Failing { reason, .. } = storage.health() else {
        panic!("a failed write that broke the handle makes the store failing");
    };
    assert!(reason.contains("os error 28"), "{reason}");
    assert!(
        put(&storage, "still-full").is_err(),
        "writes keep failing while the disk is full"
    );

    disk.full.store(false, Ordering::SeqCst);
    let health = wait_for(&storage, |health| *health == StoreHealth::Writable);
    assert_eq!(
        health,
        StoreHealth::Writable,
        "the store recovers by itself"
    );
    put(&storage, "after").unwrap();
    assert_eq!(keys(&storage), ["after", "before"]);
}

#[test]
fn a_failing_work_that_did_not_break_the_handle_leaves_the_store_writable() {
    let storage = store_on(&FillableDisk::default());
    let answer = storage
        .run(|_database| Err::<(), _>("the caller's own refusal"))
        .unwrap();
    assert!(answer.is_err());
    assert_eq!(storage.health(), StoreHealth::Writable);
    put(&storage, "key").unwrap();
}

#[test]
fn a_lazy_store_creates_no_file_until_work_needs_one() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("lazy.redb");
    let storage = Storage::lazy("lazy", &path, 1024 * 1024, prepare);
    let nothing = storage.run_existing(|_database| Ok::<_, anyhow::Error>(1));
    assert!(matches!(nothing, Ok(None)));
    assert!(!path.exists());
    put(&storage, "first").unwrap();
    assert!(path.exists());
    let found = storage.run_existing(|_database| Ok::<_, anyhow::Error>(1));
    assert!(matches!(found, Ok(Some(Ok(1)))));
    assert_eq!(keys(&storage), ["first"]);
}

#[test]
fn a_store_that_cannot_open_its_file_names_it() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("missing-dir").join("store.redb");
    let error = Storage::open("named", &path, 1024 * 1024, prepare).unwrap_err();
    assert!(error.to_string().contains("missing-dir"), "{error}");
}
