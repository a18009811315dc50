/*
 * labd.h - the lab's HTTP service (`runbook lab serve`): the application a drill breaks and
 * repairs. GET /health answers 200 when its dependencies (the lab's PostgreSQL and Redis)
 * answer, 503 naming the one that does not; GET / says what it is.
 */
#ifndef LABD_H
#define LABD_H

int labd_main(int argc, char **argv);

#endif
