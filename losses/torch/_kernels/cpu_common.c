/* What every CPU kernel of the library shares: running a pass over tasks on several threads.
 *
 * A kernel is a function fn(args, t0, t1) that does the tasks [t0, t1) of a pass; `args` points to
 * the kernel's own structure of pointers and sizes. The caller fixes the tasks (fixed ranges of
 * elements), independent of the number of threads, so every sum is the same run to run.
 */
#include <stdint.h>

#define MAX_THREADS 64

typedef void (*pass_fn)(const void *args, int64_t t0, int64_t t1);

/* Runs fn over tasks [0, tasks) split into `threads` contiguous shares. The tasks, not the
 * threads, fix the order of every sum. Built with -fopenmp, the shares go to the OpenMP runtime
 * PyTorch has already loaded (libgomp.so.1 is resolved to the loaded copy), whose workers spin
 * briefly after each PyTorch op: separate threads of our own would compete with them for the
 * cores. Without OpenMP, pthreads started and joined per call. */
#ifdef _OPENMP
void run_pass(pass_fn fn, const void *args, int64_t tasks, int32_t threads) {
    if (threads > tasks) threads = (int32_t)tasks;
    if (threads <= 1) { /* no OpenMP region: also safe in a forked child, where libgomp is not */
        fn(args, 0, tasks);
        return;
    }
#pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int32_t i = 0; i < threads; ++i) fn(args, tasks * i / threads, tasks * (i + 1) / threads);
}
#else
#include <pthread.h>

struct Share {
    pass_fn fn;
    const void *args;
    int64_t t0, t1;
};

static void *run_share(void *arg) {
    const struct Share *share = arg;
    share->fn(share->args, share->t0, share->t1);
    return NULL;
}

void run_pass(pass_fn fn, const void *args, int64_t tasks, int32_t threads) {
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads > tasks) threads = (int32_t)tasks;
    if (threads < 1) threads = 1;
    pthread_t ids[MAX_THREADS];
    struct Share shares[MAX_THREADS];
    int started[MAX_THREADS];
    for (int32_t i = 0; i < threads; ++i) {
        shares[i] = (struct Share){fn, args, tasks * i / threads, tasks * (i + 1) / threads};
        started[i] = i > 0 && pthread_create(&ids[i], NULL, run_share, &shares[i]) == 0;
    }
    run_share(&shares[0]);
    for (int32_t i = 1; i < threads; ++i) { /* a thread that could not start: its share runs here */
        if (started[i])
            pthread_join(ids[i], NULL);
        else
            run_share(&shares[i]);
    }
}
#endif
