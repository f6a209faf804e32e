// prctl(2) is variadic, which Swift cannot call: one fixed-arity wrapper for what `baton run` needs.
#ifdef __linux__
#include <sys/prctl.h>
#include <signal.h>
/// Asks the kernel to send `signal` to this process when its parent exits (survives execve).
static inline int baton_set_parent_death_signal(int signal) { return prctl(PR_SET_PDEATHSIG, signal, 0, 0, 0); }
#else
static inline int baton_set_parent_death_signal(int signal) { (void)signal; return -1; }
#endif
