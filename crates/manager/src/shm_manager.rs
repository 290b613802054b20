//! [`SharedMemoryManager`]: Python's `multiprocessing.managers.SharedMemoryManager`, a manager
//! whose server owns blocks of shared memory and unlinks them all when it stops.
//!
//! The server creates each block (so a client killed at any moment leaks nothing: the name is
//! tracked from the start), keeps it until it shuts down, and then unlinks every one, whatever
//! became of the clients. Clients get handles attached to the block ([`SharedMemory`],
//! [`ShareableList`]); dropping them only unmaps. Only a server killed outright (SIGKILL)
//! leaves its blocks behind.

use std::sync::Arc;

use multiproc_shm::{Item, ShareableList, SharedMemory};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{ManagerError, ServerError};
use crate::proxy::Proxy;
use crate::server::object::{decode_op, CallCtx, ServerObject};
use crate::wire::{Reply, Stored};
use crate::{Manager, ManagerBuilder};

pub(crate) const TYPE: &str = "SharedMemoryTracker";

/// An item of a `ShareableList`, as it crosses the wire.
#[derive(Serialize, Deserialize)]
enum WireItem {
    Int(i64),
    Float(f64),
    Bool(bool),
    None,
    Str(String),
    Bytes(Vec<u8>),
}

impl From<&Item> for WireItem {
    fn from(i: &Item) -> WireItem {
        match i {
            Item::Int(x) => WireItem::Int(*x),
            Item::Float(x) => WireItem::Float(*x),
            Item::Bool(x) => WireItem::Bool(*x),
            Item::None => WireItem::None,
            Item::Str(s) => WireItem::Str(s.clone()),
            Item::Bytes(b) => WireItem::Bytes(b.clone()),
        }
    }
}

impl From<WireItem> for Item {
    fn from(i: WireItem) -> Item {
        match i {
            WireItem::Int(x) => Item::Int(x),
            WireItem::Float(x) => Item::Float(x),
            WireItem::Bool(x) => Item::Bool(x),
            WireItem::None => Item::None,
            WireItem::Str(s) => Item::Str(s),
            WireItem::Bytes(b) => Item::Bytes(b),
        }
    }
}

#[derive(Serialize, Deserialize)]
enum Op {
    SharedMemory(u64),
    ShareableList(Vec<WireItem>),
    Names,
}

/// A block the server owns (dropping it unlinks it).
enum Block {
    Memory(SharedMemory),
    List(ShareableList),
}

impl Block {
    fn name(&self) -> &str {
        match self {
            Block::Memory(m) => m.name(),
            Block::List(l) => l.shm().name(),
        }
    }
}

/// The blocks of a server, unlinked (dropped) when it shuts down.
type Blocks = Arc<Mutex<Vec<Block>>>;

struct Tracker {
    blocks: Blocks,
}

pub(crate) fn construct(_: Stored) -> Result<Arc<dyn ServerObject>, ServerError> {
    Ok(Arc::new(Tracker {
        blocks: Arc::new(Mutex::new(Vec::new())),
    }))
}

fn os(e: multiproc_shm::ShmError) -> ServerError {
    ServerError::Os(e.to_string())
}

impl Tracker {
    /// Keep `block` until the server shuts down.
    fn track(&self, block: Block, ctx: &CallCtx<'_>) -> Result<Reply, ServerError> {
        let name = block.name().to_owned();
        let mut blocks = self.blocks.lock();
        if blocks.is_empty() {
            let mine = self.blocks.clone();
            ctx.shared.on_shutdown.lock().push(Box::new(move || {
                let gone = std::mem::take(&mut *mine.lock());
                tracing::debug!(blocks = gone.len(), "unlinking the shared memory blocks");
            }));
        }
        blocks.push(block);
        drop(blocks);
        if ctx.shared.is_shutting_down() {
            // the hooks may have run already: do not keep it past them
            self.blocks.lock().clear();
            return Err(ServerError::ShuttingDown);
        }
        Reply::plain(&name)
    }
}

impl ServerObject for Tracker {
    fn type_name(&self) -> &str {
        TYPE
    }

    fn call(&self, op: &[u8], ctx: &mut CallCtx<'_>) -> Result<Reply, ServerError> {
        match decode_op::<Op>(op)? {
            Op::SharedMemory(size) => {
                let size = usize::try_from(size)
                    .map_err(|_| ServerError::Os(format!("{size} bytes is too big")))?;
                let m = SharedMemory::create(None, size).map_err(os)?;
                self.track(Block::Memory(m), ctx)
            }
            Op::ShareableList(items) => {
                let items: Vec<Item> = items.into_iter().map(Item::from).collect();
                let l = ShareableList::new(None, &items).map_err(os)?;
                self.track(Block::List(l), ctx)
            }
            Op::Names => {
                let names: Vec<String> = self
                    .blocks
                    .lock()
                    .iter()
                    .map(|b| b.name().to_owned())
                    .collect();
                Reply::plain(&names)
            }
        }
    }
}

/// A manager whose server owns blocks of shared memory (Python's
/// `multiprocessing.managers.SharedMemoryManager`): [`shared_memory`](Self::shared_memory)
/// and [`shareable_list`](Self::shareable_list) make blocks that outlive the handles given out,
/// and the server unlinks them all when it shuts down, even if every client was killed. It is a
/// [`Manager`] too ([`manager`](Self::manager)): dicts and the rest work on the same server.
///
/// ```
/// use multiproc::managers::SharedMemoryManager;
/// use multiproc::shm::SharedMemory;
///
/// multiproc::init();
/// let smm = SharedMemoryManager::start().unwrap();
/// let block = smm.shared_memory(64).unwrap();
/// block.write(0, b"hi").unwrap();
/// let name = block.name().to_string();
/// drop(block); // only unmapped: the server keeps the block
/// assert_eq!(SharedMemory::attach(&name).unwrap().read(0, 2).unwrap(), b"hi");
/// smm.shutdown().unwrap();
/// assert!(SharedMemory::attach(&name).is_err()); // unlinked with the server
/// ```
#[derive(Debug)]
pub struct SharedMemoryManager {
    manager: Manager,
    tracker: Proxy,
}

impl SharedMemoryManager {
    /// Start the server in a child process (a fresh local address, a random key).
    pub fn start() -> Result<SharedMemoryManager, ManagerError> {
        SharedMemoryManager::start_with(Manager::builder())
    }

    /// Start the server with the choices of `builder` (start method, address, key, ...).
    ///
    /// ```
    /// multiproc::init();
    /// let b = multiproc::Manager::builder().start_method(multiproc::StartMethod::Spawn);
    /// let smm = multiproc::managers::SharedMemoryManager::start_with(b).unwrap();
    /// assert_eq!(smm.shareable_list(&[1.into()]).unwrap().len(), 1);
    /// ```
    pub fn start_with(builder: ManagerBuilder) -> Result<SharedMemoryManager, ManagerError> {
        SharedMemoryManager::from_manager(builder.start()?)
    }

    /// Make blocks on the server of `manager`: one started, served, or reached with
    /// [`Manager::connect`] (Python's `SharedMemoryManager(address, authkey).connect()`). Any
    /// server of this crate owns blocks; they are unlinked when it shuts down, whichever client
    /// made them and whatever became of it.
    ///
    /// ```
    /// use multiproc::managers::SharedMemoryManager;
    /// use multiproc::Manager;
    /// multiproc::init();
    /// let served = Manager::serve("127.0.0.1:0", b"key").unwrap();
    /// let there = Manager::connect(served.address().clone(), b"key").unwrap();
    /// let smm = SharedMemoryManager::from_manager(there).unwrap();
    /// let name = smm.shared_memory(16).unwrap().name().to_string();
    /// served.shutdown().unwrap();
    /// assert!(multiproc::shm::SharedMemory::attach(&name).is_err());
    /// ```
    pub fn from_manager(manager: Manager) -> Result<SharedMemoryManager, ManagerError> {
        let tracker = manager.create(TYPE, Stored::default())?;
        Ok(SharedMemoryManager { manager, tracker })
    }

    /// A new block of at least `size` bytes, zeroed, owned by the server; the handle is
    /// attached (dropping it does not unlink).
    pub fn shared_memory(&self, size: usize) -> Result<SharedMemory, ManagerError> {
        let name: String = self.tracker.call(&Op::SharedMemory(size as u64))?;
        Ok(SharedMemory::attach(&name)?)
    }

    /// A new `ShareableList` of `items`, in a block owned by the server; the handle is
    /// attached.
    ///
    /// ```
    /// use multiproc::shm::Item;
    /// multiproc::init();
    /// let smm = multiproc::managers::SharedMemoryManager::start().unwrap();
    /// let l = smm.shareable_list(&[Item::from(1), "two".into()]).unwrap();
    /// l.set(0, Item::Int(10)).unwrap();
    /// assert_eq!(l.to_vec().unwrap(), [Item::Int(10), "two".into()]);
    /// ```
    pub fn shareable_list(&self, items: &[Item]) -> Result<ShareableList, ManagerError> {
        let items: Vec<WireItem> = items.iter().map(WireItem::from).collect();
        let name: String = self.tracker.call(&Op::ShareableList(items))?;
        Ok(ShareableList::attach(&name)?)
    }

    /// The names of the blocks the server owns now.
    ///
    /// ```
    /// multiproc::init();
    /// let smm = multiproc::managers::SharedMemoryManager::start().unwrap();
    /// let b = smm.shared_memory(8).unwrap();
    /// assert_eq!(smm.block_names().unwrap(), [b.name().to_string()]);
    /// ```
    pub fn block_names(&self) -> Result<Vec<String>, ManagerError> {
        self.tracker.call(&Op::Names)
    }

    /// The manager underneath (for dicts and the rest on the same server, its address, its
    /// server's pid).
    pub fn manager(&self) -> &Manager {
        &self.manager
    }

    /// Stop the server, which unlinks every block (see [`Manager::shutdown`]; for a manager
    /// that [`connect`](Manager::connect)ed, this asks the server elsewhere to stop).
    pub fn shutdown(&self) -> Result<(), ManagerError> {
        self.manager.shutdown()
    }
}
