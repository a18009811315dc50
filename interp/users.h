/*
 * users.h - a user's name for a uid, without hanging on NSS.
 *
 * getpwuid_r asks NSS, which may ask sssd or LDAP: while those are down (an incident of their own)
 * the call blocks for as long as their own timeouts, or for ever, and no Ctrl-C reaches it. The
 * lookup runs in a worker that the caller waits for at most USERS_WAIT_MS.
 */
#ifndef USERS_H
#define USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define USERS_WAIT_MS 500

/* Writes uid's name into buf: true; or "uid N": false, when NSS knows no such user or did not
 * answer in time (then it is not asked again until that lookup has ended). Names are cached. */
bool users_name(uid_t uid, char *buf, size_t size);

#endif
