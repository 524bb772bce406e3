/*
 * vendd.c - main(): command line, configuration, then app_run().
 *
 * Exit statuses (sysexits(3)): 0 success, 64 usage error, 74 cannot write
 * the --check output, 78 bad configuration; otherwise app_run()'s status.
 */
#include <getopt.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <sysexits.h>
#include <unistd.h>

#include "app.h"
#include "conf.h"
#include "vend/err.h"
#include "xmalloc.h"

extern char **environ;

#define USAGE "usage: vendd [--check [--verbose]] | --help | --version\n"

static void print_help(FILE *out)
{
    fputs(USAGE "\n"
                "The vending backend daemon. It is configured through environment variables,\n"
                "also read from .env in the working directory (see docs/CONFIG.md).\n"
                "\n"
                "  -n, --check     check the configuration, print 'configuration OK' and exit\n"
                "  -v, --verbose   with --check: also print the normalized configuration\n"
                "  -h, --help      print this help and exit\n"
                "  -V, --version   print the version and exit\n"
                "\n"
                "Exit status: 0 ok, 64 usage error, 78 bad configuration.\n",
          out);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("vendd: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n" USAGE, stderr);
    return EX_USAGE;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"check", no_argument, NULL, 'n'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    struct vendd_conf conf;
    bool check = false;
    bool verbose = false;
    char shortopt[3] = "-?";
    int c;

    /* SQLite's statement journals (one per write inside a savepoint: every message of a
     * group commit) are allocated and freed per statement; glibc's default would give the
     * top of the heap back to the kernel after each and take it again (brk and page faults
     * were a quarter of the ingest's CPU). Keep up to 16 MiB of freed heap instead. */
    mallopt(M_TRIM_THRESHOLD, XMALLOC_TRIM_THRESHOLD);
    mallopt(M_MMAP_THRESHOLD, XMALLOC_MMAP_THRESHOLD);
    opterr = 0; /* our own message, without argv[0]'s full path */
    for (;;) {
        c = getopt_long(argc, argv, "nvhV", longopts, NULL);
        if (c == -1)
            break;
        switch (c) {
        case 'n':
            check = true;
            break;
        case 'v':
            verbose = true;
            break;
        case 'h':
            print_help(stdout);
            return 0;
        case 'V':
            printf("vendd %s\n", VENDD_VERSION);
            return 0;
        default:
            if (optopt != 0) {
                shortopt[1] = (char)optopt;
                return usage_error("unknown option '%s'", shortopt);
            }
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (verbose && !check)
        return usage_error("--verbose only goes with --check");

    if (conf_load(&conf, environ, ".env", stderr) < 0)
        return EX_CONFIG;
    if (!check)
        return app_run(&conf);

    if (verbose)
        conf_print(&conf, stdout);
    puts("configuration OK");
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fputs("vendd: cannot write to standard output\n", stderr);
        return EX_IOERR;
    }
    return 0;
}
