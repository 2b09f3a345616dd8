//! How armord's heap gives memory back to the system.
//!
//! glibc's allocator gives each thread that allocates under contention its
//! own arena, and keeps the pages freed in an arena for reuse. A full
//! reconcile at 10,000 profiles frees more than armord then holds; spread
//! over several arenas, that stays resident. So armord keeps to one arena
//! and trims it when a burst of work is over.

/// One arena: the loop thread and the blocking pool's reconcile take
/// turns, and the follower allocates little, so there is next to no
/// contention for it. Measured at 10,000 profiles, one arena against two:
/// 39 against 41–46 MiB at rest, and a change no slower (BENCHMARKS.md).
const ARENAS: i32 = 1;

/// Blocks this large or larger are mapped on their own and unmapped when
/// freed. glibc raises its threshold to the largest block freed (up to 32
/// MiB), after which the manifest's and the pending record's text, the
/// kernel's list and the plan's tables, megabytes each at 10,000 profiles,
/// come from the heap and leave it spread out for good. Fixed, the
/// threshold stays.
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Cap the allocator's arenas and fix its mapping threshold; called once
/// at start, before any thread.
#[allow(unsafe_code)]
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt takes no pointer; M_ARENA_MAX only bounds how many
    // arenas later threads may create, M_MMAP_THRESHOLD which blocks are
    // mapped on their own.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, ARENAS);
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Hand the pages freed since the last call back to the system.
#[allow(unsafe_code)]
pub fn give_back_freed() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; it takes no pointer
    // and may be called from any thread at any time.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
