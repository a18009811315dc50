/*
 * users.h - a user's name for a uid, without hanging on NSS.
 *
 * getpwuid_r asks NSS, which may ask sssd or LDAP: while those are down (an incident of their own)
 * the call blocks for as long as their own timeouts, or for ever, and no Ctrl-C reaches it. A user
 * of /etc/passwd is read from that file when nsswitch.conf reads it first (Debian's default);
 * otherwise a worker asks NSS, and the caller waits for it until a deadline, USERS_WAIT_MS at most.
 * Main thread only.
 */
#ifndef USERS_H
#define USERS_H

#include "sched.h"

#include <stddef.h>
#include <sys/types.h>

#define USERS_WAIT_MS 500

enum user_lookup { USER_FOUND, USER_UNKNOWN, USER_SILENT };   /* SILENT: NSS did not answer in time */

/* Writes uid's name into buf, or "uid N" unless FOUND. Waits until the deadline (0: none of the
 * caller's), USERS_WAIT_MS at most; after a SILENT lookup, NSS is not asked again until that one
 * has ended (its answer, when it comes, is kept). Names are cached. */
enum user_lookup users_name(uid_t uid, char *buf, size_t size, msec_t deadline);

/* The same for uid's home directory ("" unless FOUND). */
enum user_lookup users_home(uid_t uid, char *buf, size_t size, msec_t deadline);

/* $HOME, else the home directory of this process's user (looked up until the deadline, and then
 * kept for the process); NULL when neither is known. */
const char *users_home_dir(msec_t deadline);

/* The name of this process's user (getuid()), looked up once: the transcript's header, its locks
 * and the gate's records name the same user, whatever NSS answers later. */
const char *users_self(void);

#endif
