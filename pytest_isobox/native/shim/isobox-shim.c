/*
 * isobox-shim: a container's monitor and its PID 1 up to exec, in one small C program.
 *
 * Why: the Python monitor is a fork of the engine's ~45 MB interpreter, and the container
 * process a fork of that; on the small VMs we target each such fork + copy-on-write + exit
 * costs several milliseconds of CPU. This program is spawned (vfork + exec), so a container
 * costs a few hundred microseconds of CPU here. Every decision stays in Python: the engine
 * sends a plan that is a list of plain steps (mount this, drop that), and this program only
 * carries them out in order, as runc's init does, then watches the container.
 *
 * Protocol (see shim.py, which speaks the other side):
 *   argv[1]    flags, "-" for none: "o" fd 5 is a pidfd of the owner; "u" fd 6 is a user
 *              namespace (rootless: entered before anything else) and fd 7 a connection to
 *              its holder, kept open while this program runs (the holder lives as long);
 *              "n" with "u": the container will not be on the host's network, so its
 *              network namespace is made ahead too (see ahead_flags)
 *   argv[2..]  cgroup.procs files the container process is put in, ahead of time (a spare)
 *   fd 3       from the engine: u32 length + plan, later one byte "g" when the network is up
 *              (EOF before the plan: not needed after all; kill the waiting process, exit)
 *   fd 4       to the engine, lines: "ready PID" (namespaces made, waiting for the network),
 *              "started PID", "failed CODE MESSAGE", "exited STATUS" (a wait(2) status)
 *   fd 5       optional: a pidfd of the owner; when it exits, the container is killed
 *   fd 6, 7    optional: the user namespace and the holder's connection (see argv[1])
 * The plan is a sequence of NUL-terminated strings: "key value" settings for the monitor up
 * to an empty string, then the container's steps (name, then a fixed number of arguments).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CONTROL_FD 3
#define EVENTS_FD 4
#define OWNER_FD 5
#define USERNS_FD 6
#define PIN_FD 7
#define MAX_FIELDS 65536

/* ------------------------------------------------------------------ small helpers */

static int error_fd = -1; /* in the container process: where a failure is told */

/* What a spare's container process makes before its plan arrives (every container needs
 * them, except host networking, which joins back): the namespaces, private mounts, lo up.
 * In a user namespace the host's network namespace cannot be joined back (it belongs to the
 * initial user namespace), so there the network namespace waits for the plan, unless the
 * engine said ("n") that the container will not be on the host's network. */
static int ahead_flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET;
static int ahead_done = 0;
static int host_net_fd = -1; /* the shim's network namespace, for host networking */

static void prepare_ahead(void) {
  if (unshare(ahead_flags) < 0) return; /* the plan's own steps will say why */
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) return;
  ahead_done = 1;
  if (!(ahead_flags & CLONE_NEWNET)) return;
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq req;
  memset(&req, 0, sizeof req);
  snprintf(req.ifr_name, sizeof req.ifr_name, "lo");
  if (sock >= 0 && ioctl(sock, SIOCGIFFLAGS, &req) == 0) {
    req.ifr_flags |= IFF_UP;
    ioctl(sock, SIOCSIFFLAGS, &req);
  }
  if (sock >= 0) close(sock);
}

static void write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    p += n;
    len -= (size_t)n;
  }
}

static int read_full(int fd, void *buf, size_t len) {
  char *p = buf;
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static void event(const char *fmt, ...) {
  char line[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof line - 2) n = sizeof line - 2;
  for (int i = 0; i < n; i++)
    if (line[i] == '\n') line[i] = ' ';
  line[n++] = '\n';
  write_all(EVENTS_FD, line, (size_t)n);
}

/* The container process gives up: "CODE\nmessage" on the error pipe, exit CODE. */
static void fail(int code, const char *fmt, ...) {
  char msg[3000];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  char out[3100];
  int n = snprintf(out, sizeof out, "%d\n%s", code, msg);
  if (error_fd >= 0 && n > 0) write_all(error_fd, out, (size_t)n);
  _exit(code);
}

static long long number(const char *s) { return strtoll(s, NULL, 0); }

/* ------------------------------------------------------------------ the plan */

struct plan {
  char *data;
  size_t len;
  char **fields;
  int count;
  int steps; /* index of the first container step */
  const char *log_path, *exit_path;
  int persistent; /* outlives its owner: stop watching it */
};

static int split_plan(struct plan *p) {
  p->fields = calloc(MAX_FIELDS, sizeof(char *));
  if (!p->fields) return -1;
  size_t i = 0;
  p->count = 0;
  while (i < p->len && p->count < MAX_FIELDS) {
    p->fields[p->count++] = p->data + i;
    i += strnlen(p->data + i, p->len - i) + 1;
  }
  p->steps = -1;
  for (int f = 0; f + 1 < p->count; f += 2) {
    if (p->fields[f][0] == '\0') {
      p->steps = f + 1;
      break;
    }
    if (!strcmp(p->fields[f], "log")) p->log_path = p->fields[f + 1];
    if (!strcmp(p->fields[f], "exit")) p->exit_path = p->fields[f + 1];
    if (!strcmp(p->fields[f], "persistent")) p->persistent = p->fields[f + 1][0] == '1';
  }
  if (p->steps < 0) {
    for (int f = 0; f < p->count; f++)
      if (p->fields[f][0] == '\0') {
        p->steps = f + 1;
        break;
      }
  }
  return p->steps < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------ container steps */

static const char *opt(const char *s) { return s[0] ? s : NULL; }

static void do_mount(const char *src, const char *target, const char *fstype, unsigned long flags,
                     const char *data) {
  if (mount(opt(src), target, opt(fstype), flags, opt(data)) < 0)
    fail(127, "mount %s on %s: %s", src[0] ? src : fstype, target, strerror(errno));
}

static void mkdir_p(const char *path, mode_t mode) {
  char buf[PATH_MAX];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0755) < 0 && errno != EEXIST) fail(127, "mkdir %s: %s", buf, strerror(errno));
    *p = '/';
  }
  if (mkdir(buf, mode) < 0 && errno != EEXIST) fail(127, "mkdir %s: %s", buf, strerror(errno));
}

/* `root/path` with every symlink resolved as if root were "/": never outside root. */
static void secure_join(const char *root, const char *path, char *out, size_t size) {
  char pending[PATH_MAX * 2], resolved[PATH_MAX] = "";
  int followed = 0;
  snprintf(pending, sizeof pending, "%s", path);
  char *rest = pending;
  while (*rest) {
    while (*rest == '/') rest++;
    if (!*rest) break;
    char *end = strchr(rest, '/');
    size_t n = end ? (size_t)(end - rest) : strlen(rest);
    char part[NAME_MAX + 1];
    if (n > NAME_MAX) fail(127, "path component too long in %s", path);
    memcpy(part, rest, n);
    part[n] = '\0';
    rest += n;
    if (!strcmp(part, ".")) continue;
    if (!strcmp(part, "..")) {
      char *slash = strrchr(resolved, '/');
      if (slash) *slash = '\0';
      continue;
    }
    char candidate[PATH_MAX], target[PATH_MAX];
    snprintf(candidate, sizeof candidate, "%s%s/%s", root, resolved, part);
    ssize_t len = readlink(candidate, target, sizeof target - 1);
    if (len < 0) {
      size_t used = strlen(resolved);
      snprintf(resolved + used, sizeof resolved - used, "/%s", part);
      continue;
    }
    target[len] = '\0';
    if (++followed > 40) fail(127, "too many levels of symbolic links in %s", path);
    if (target[0] == '/') resolved[0] = '\0';
    char next[PATH_MAX * 2];
    snprintf(next, sizeof next, "%s/%s", target, rest);
    snprintf(pending, sizeof pending, "%s", next);
    rest = pending;
  }
  snprintf(out, size, "%s%s", root, resolved);
}

/* Make the mount point for path below root (a dir, or an empty file) into out. */
static void mountpoint(const char *root, const char *path, int is_dir, char *out, size_t size) {
  secure_join(root, path, out, size);
  if (is_dir) {
    mkdir_p(out, 0755);
    return;
  }
  struct stat st;
  if (stat(out, &st) == 0) return;
  char parent[PATH_MAX];
  snprintf(parent, sizeof parent, "%s", out);
  char *slash = strrchr(parent, '/');
  if (slash && slash != parent) {
    *slash = '\0';
    mkdir_p(parent, 0755);
  }
  int fd = open(out, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) fail(127, "create %s: %s", out, strerror(errno));
  close(fd);
}

static void interface_up(const char *name) {
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq req;
  memset(&req, 0, sizeof req);
  snprintf(req.ifr_name, sizeof req.ifr_name, "%s", name);
  if (sock < 0 || ioctl(sock, SIOCGIFFLAGS, &req) < 0) fail(127, "%s: %s", name, strerror(errno));
  req.ifr_flags |= IFF_UP;
  if (ioctl(sock, SIOCSIFFLAGS, &req) < 0) fail(127, "%s up: %s", name, strerror(errno));
  close(sock);
}

/* Docker's user resolution (runc's GetExecUser), as native/users.py does it. */
struct user {
  uid_t uid;
  gid_t gid;
  gid_t groups[NGROUPS_MAX];
  int ngroups;
  char home[PATH_MAX];
};

static int split_colon(char *line, char **cols, int max) {
  int n = 0;
  cols[n++] = line;
  for (char *p = line; *p && n < max; p++)
    if (*p == ':') {
      *p = '\0';
      cols[n++] = p + 1;
    }
  return n;
}

static int all_digits(const char *s) {
  if (!*s) return 0;
  for (; *s; s++)
    if (!isdigit((unsigned char)*s)) return 0;
  return 1;
}

static void strip(char *line) {
  size_t n = strlen(line);
  while (n && isspace((unsigned char)line[n - 1])) line[--n] = '\0';
}

static void resolve_user(const char *spec, struct user *u) {
  char user_part[256] = "", group_part[256] = "";
  const char *colon = strchr(spec, ':');
  if (colon) {
    snprintf(user_part, sizeof user_part, "%.*s", (int)(colon - spec), spec);
    snprintf(group_part, sizeof group_part, "%s", colon + 1);
  } else {
    snprintf(user_part, sizeof user_part, "%s", spec);
  }
  if (!user_part[0]) strcpy(user_part, "0");
  int uid_numeric = all_digits(user_part);
  u->uid = uid_numeric ? (uid_t)atoll(user_part) : 0;
  u->gid = 0;
  strcpy(u->home, "/");
  char name[256] = "";
  int found = 0;
  char line[4096];
  FILE *f = fopen("/etc/passwd", "re");
  while (f && fgets(line, sizeof line, f)) {
    strip(line);
    char *c[8];
    if (!line[0] || line[0] == '#' || split_colon(line, c, 8) < 7) continue;
    if (!all_digits(c[2]) || !all_digits(c[3])) continue;
    if (!strcmp(c[0], user_part) || (uid_numeric && (uid_t)atoll(c[2]) == u->uid)) {
      snprintf(name, sizeof name, "%s", c[0]);
      u->uid = (uid_t)atoll(c[2]);
      u->gid = (gid_t)atoll(c[3]);
      snprintf(u->home, sizeof u->home, "%s", c[5][0] ? c[5] : "/");
      found = 1;
      break;
    }
  }
  if (f) fclose(f);
  if (!found && !uid_numeric)
    fail(127, "unable to find user %s: no matching entries in passwd file", user_part);
  gid_t extra[NGROUPS_MAX];
  int nextra = 0;
  f = fopen("/etc/group", "re");
  if (group_part[0]) {
    int gid_numeric = all_digits(group_part), matched = 0;
    while (f && fgets(line, sizeof line, f)) {
      strip(line);
      char *c[5];
      if (!line[0] || line[0] == '#' || split_colon(line, c, 5) < 3 || !all_digits(c[2])) continue;
      if (!strcmp(c[0], group_part) || (gid_numeric && (gid_t)atoll(c[2]) == (gid_t)atoll(group_part))) {
        u->gid = (gid_t)atoll(c[2]);
        matched = 1;
        break;
      }
    }
    if (!matched) {
      if (!gid_numeric)
        fail(127, "unable to find group %s: no matching entries in group file", group_part);
      u->gid = (gid_t)atoll(group_part);
    }
  } else if (name[0]) {
    while (f && fgets(line, sizeof line, f) && nextra < NGROUPS_MAX) {
      strip(line);
      char *c[5];
      if (!line[0] || line[0] == '#' || split_colon(line, c, 5) < 4 || !all_digits(c[2])) continue;
      gid_t g = (gid_t)atoll(c[2]);
      char *save = NULL;
      for (char *m = strtok_r(c[3], ",", &save); m; m = strtok_r(NULL, ",", &save)) {
        if (strcmp(m, name)) continue;
        int dup = 0;
        for (int i = 0; i < nextra; i++) dup |= extra[i] == g;
        if (!dup) extra[nextra++] = g;
        break;
      }
    }
  }
  if (f) fclose(f);
  u->ngroups = 0;
  u->groups[u->ngroups++] = u->gid;
  for (int i = 0; i < nextra; i++)
    if (extra[i] != u->gid) u->groups[u->ngroups++] = extra[i];
}

static void set_caps(unsigned long long effective, unsigned long long permitted,
                     unsigned long long inheritable) {
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  for (int i = 0; i < 2; i++) {
    data[i].effective = (uint32_t)(effective >> (32 * i));
    data[i].permitted = (uint32_t)(permitted >> (32 * i));
    data[i].inheritable = (uint32_t)(inheritable >> (32 * i));
  }
  if (syscall(SYS_capset, &header, data) < 0) fail(127, "capset: %s", strerror(errno));
}

static void wait_for_go(int go_r) {
  char c;
  if (read(go_r, &c, 1) != 1 || c != 'g') _exit(1);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

static void load_seccomp(const char *hex) {
  size_t n = strlen(hex) / 2;
  unsigned char *bytes = malloc(n ? n : 1);
  for (size_t i = 0; i < n; i++) bytes[i] = (unsigned char)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
  struct sock_fprog prog = {(unsigned short)(n / sizeof(struct sock_filter)), (struct sock_filter *)bytes};
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
    fail(127, "seccomp: %s", strerror(errno));
}

/* Find argv[0] in PATH, as Docker does, then execve; 126/127 as Docker reports them. */
static void exec_process(char **argv, char **envp) {
  const char *path = NULL;
  for (char **e = envp; *e; e++)
    if (!strncmp(*e, "PATH=", 5)) path = *e + 5;
  if (!path) path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  char found[PATH_MAX];
  const char *exe = argv[0];
  if (!strchr(argv[0], '/')) {
    exe = NULL;
    const char *p = path;
    while (1) {
      const char *end = strchr(p, ':');
      size_t n = end ? (size_t)(end - p) : strlen(p);
      snprintf(found, sizeof found, "%.*s/%s", (int)(n ? n : 1), n ? p : ".", argv[0]);
      struct stat st;
      if (stat(found, &st) == 0 && S_ISREG(st.st_mode) && access(found, X_OK) == 0) {
        exe = found;
        break;
      }
      if (!end) break;
      p = end + 1;
    }
    if (!exe) fail(127, "exec: \"%s\": executable file not found in $PATH", argv[0]);
  }
  execve(exe, argv, envp);
  int code = (errno == EACCES || errno == ENOEXEC || errno == EISDIR) ? 126 : 127;
  fail(code, "exec %s: %s", argv[0], strerror(errno));
}

/* Carry out the plan's steps, from `first`, in the freshly forked container process. */
static void run_steps(char **f, int count, int first, int ready_w, int go_r) {
  static char root[PATH_MAX] = "";
  char point[PATH_MAX];
  struct user user = {0};
  int have_user = 0;
  int i = first;
#define ARG(k) (i + (k) < count ? f[i + (k)] : (fail(127, "plan: step %s lacks arguments", f[i]), ""))
#ifdef TRACE /* cc -DTRACE=FD: each step's time in microseconds, written to fd FD */
  struct timespec t_prev, t_now;
  clock_gettime(CLOCK_MONOTONIC, &t_prev);
  const char *prev_op = "start";
#endif
  while (i < count) {
    const char *op = f[i];
#ifdef TRACE
    clock_gettime(CLOCK_MONOTONIC, &t_now);
    dprintf(TRACE, "%s %ld\n", prev_op, (t_now.tv_sec - t_prev.tv_sec) * 1000000 + (t_now.tv_nsec - t_prev.tv_nsec) / 1000);
    t_prev = t_now;
    prev_op = op;
#endif
    if (!strcmp(op, "end")) break;
    if (!strcmp(op, "unshare")) {
      int flags = (int)number(ARG(1));
      if (ahead_done) { /* made ahead: only what is left, and back to the host's network */
        if ((ahead_flags & CLONE_NEWNET) && !(flags & CLONE_NEWNET) &&
            setns(host_net_fd, CLONE_NEWNET) < 0)
          fail(127, "join the host network: %s", strerror(errno));
        flags &= ~ahead_flags;
      }
      if (flags && unshare(flags) < 0) fail(127, "unshare: %s", strerror(errno));
      i += 2;
    } else if (!strcmp(op, "private")) { /* mount events stay out of the host's namespace */
      if (!ahead_done) do_mount("", "/", "", MS_REC | MS_PRIVATE, "");
      i += 1;
    } else if (!strcmp(op, "ready")) { /* the engine attaches our network meanwhile */
      write_all(ready_w, "r", 1);
      i += 1;
    } else if (!strcmp(op, "go")) {
      wait_for_go(go_r);
      i += 1;
    } else if (!strcmp(op, "lo")) {
      if (!ahead_done || !(ahead_flags & CLONE_NEWNET)) interface_up("lo");
      i += 1;
    } else if (!strcmp(op, "chdir")) {
      if (chdir(ARG(1)) < 0) fail(127, "chdir %s: %s", f[i + 1], strerror(errno));
      i += 2;
    } else if (!strcmp(op, "root")) {
      snprintf(root, sizeof root, "%s", ARG(1));
      i += 2;
    } else if (!strcmp(op, "mount")) { /* SRC TARGET FSTYPE FLAGS DATA, TARGET absolute */
      do_mount(ARG(1), ARG(2), ARG(3), (unsigned long)number(ARG(4)), ARG(5));
      i += 6;
    } else if (!strcmp(op, "mountin")) { /* SRC PATH-IN-ROOT ISDIR FSTYPE FLAGS DATA */
      mountpoint(root, ARG(2), (int)number(ARG(3)), point, sizeof point);
      do_mount(ARG(1), point, ARG(4), (unsigned long)number(ARG(5)), ARG(6));
      i += 7;
    } else if (!strcmp(op, "remountin")) { /* PATH-IN-ROOT FLAGS: after a bind, its flags */
      secure_join(root, ARG(1), point, sizeof point);
      do_mount("", point, "", (unsigned long)number(ARG(2)), "");
      i += 3;
    } else if (!strcmp(op, "mknodin")) { /* PATH-IN-ROOT MODE MAJOR MINOR */
      secure_join(root, ARG(1), point, sizeof point);
      mode_t mode = (mode_t)number(ARG(2));
      if (mknod(point, mode | S_IFCHR, makedev(number(ARG(3)), number(ARG(4)))) < 0)
        fail(127, "mknod %s: %s", f[i + 1], strerror(errno));
      chmod(point, mode);
      i += 5;
    } else if (!strcmp(op, "symlinkin")) { /* TARGET LINK-IN-ROOT */
      secure_join(root, ARG(2), point, sizeof point);
      if (symlink(ARG(1), point) < 0) fail(127, "symlink %s: %s", f[i + 2], strerror(errno));
      i += 3;
    } else if (!strcmp(op, "pivot")) {
      if (chdir(root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 || umount2(".", MNT_DETACH) < 0 ||
          chdir("/") < 0)
        fail(127, "pivot_root %s: %s", root, strerror(errno));
      root[0] = '\0';
      i += 1;
    } else if (!strcmp(op, "sysctl")) { /* KEY VALUE: /proc/sys/KEY (dots as slashes), after pivot */
      char path[PATH_MAX];
      snprintf(path, sizeof path, "/proc/sys/%s", ARG(1));
      for (char *p = path + 10; *p; p++)
        if (*p == '.') *p = '/';
      int fd = open(path, O_WRONLY | O_CLOEXEC);
      if (fd < 0 || write(fd, ARG(2), strlen(f[i + 2])) < 0)
        fail(127, "sysctl %s=%s: %s", f[i + 1], f[i + 2], strerror(errno));
      close(fd);
      i += 3;
    } else if (!strcmp(op, "mask")) { /* PATH: unreadable (after pivot) */
      struct stat st;
      if (stat(ARG(1), &st) == 0) {
        if (S_ISDIR(st.st_mode))
          do_mount("tmpfs", f[i + 1], "tmpfs", MS_RDONLY, "");
        else
          do_mount("/dev/null", f[i + 1], "", MS_BIND, "");
      }
      i += 2;
    } else if (!strcmp(op, "readonly")) { /* PATH (after pivot) */
      if (access(ARG(1), F_OK) == 0) {
        do_mount(f[i + 1], f[i + 1], "", MS_BIND | MS_REC, "");
        do_mount("", f[i + 1], "", MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "");
      }
      i += 2;
    } else if (!strcmp(op, "hostname")) {
      if (sethostname(ARG(1), strlen(f[i + 1])) < 0) fail(127, "sethostname: %s", strerror(errno));
      i += 2;
    } else if (!strcmp(op, "setsid")) {
      setsid();
      i += 1;
    } else if (!strcmp(op, "user")) { /* SPEC: resolved in the container's /etc/passwd */
      resolve_user(ARG(1), &user);
      have_user = 1;
      i += 2;
    } else if (!strcmp(op, "workdir")) { /* PATH CREATE */
      if (number(ARG(2))) {
        char buf[PATH_MAX];
        snprintf(buf, sizeof buf, "%s", ARG(1));
        struct stat st;
        if (stat(buf, &st) < 0) {
          for (char *p = buf + 1; *p; p++)
            if (*p == '/') {
              *p = '\0';
              mkdir(buf, 0755);
              *p = '/';
            }
          mkdir(buf, 0755);
        }
      }
      if (chdir(f[i + 1]) < 0) fail(127, "chdir to cwd (\"%s\") set in config: %s", f[i + 1], strerror(errno));
      i += 3;
    } else if (!strcmp(op, "rlimit")) { /* RESOURCE SOFT HARD (-1: unlimited) */
      long long soft = number(ARG(2)), hard = number(ARG(3));
      struct rlimit rl = {soft < 0 ? RLIM_INFINITY : (rlim_t)soft, hard < 0 ? RLIM_INFINITY : (rlim_t)hard};
      if (setrlimit((int)number(ARG(1)), &rl) < 0) fail(127, "setrlimit %s: %s", f[i + 1], strerror(errno));
      i += 4;
    } else if (!strcmp(op, "nofile")) { /* LIMIT: both soft and hard, capped by the hard limit */
      struct rlimit rl;
      getrlimit(RLIMIT_NOFILE, &rl);
      rlim_t want = (rlim_t)number(ARG(1));
      if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) want = rl.rlim_max;
      rl.rlim_cur = rl.rlim_max = want;
      if (setrlimit(RLIMIT_NOFILE, &rl) < 0) fail(127, "setrlimit nofile: %s", strerror(errno));
      i += 2;
    } else if (!strcmp(op, "bounding")) { /* KEEP-MASK LAST-CAP */
      unsigned long long keep = (unsigned long long)number(ARG(1));
      int last = (int)number(ARG(2));
      for (int cap = 0; cap <= last; cap++)
        if (!(keep & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
          fail(127, "drop capability %d: %s", cap, strerror(errno));
      prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
      i += 3;
    } else if (!strcmp(op, "seccomp")) { /* HEX of struct sock_filter[] */
      load_seccomp(ARG(1));
      i += 2;
    } else if (!strcmp(op, "nonewprivs")) {
      prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
      i += 1;
    } else if (!strcmp(op, "identity")) { /* SETGROUPS(0/1): become the resolved user */
      if (!have_user) resolve_user("", &user);
      if (number(ARG(1)) && setgroups((size_t)user.ngroups, user.groups) < 0)
        fail(127, "setgroups: %s", strerror(errno));
      if (setgid(user.gid) < 0) fail(127, "setgid %u: %s", user.gid, strerror(errno));
      if (setuid(user.uid) < 0) fail(127, "setuid %u: %s", user.uid, strerror(errno));
      i += 2;
    } else if (!strcmp(op, "caps")) { /* MASK: effective = permitted = MASK for root, else none */
      unsigned long long mask = user.uid == 0 ? (unsigned long long)number(ARG(1)) : 0;
      set_caps(mask, mask, 0);
      prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0); /* a uid change cleared it */
      i += 2;
    } else if (!strcmp(op, "exec")) { /* ARGC ARGV... ENVC ENV... (HOME added from passwd) */
      int argc = (int)number(ARG(1));
      char **argv = calloc((size_t)argc + 1, sizeof(char *));
      for (int k = 0; k < argc; k++) argv[k] = ARG(2 + k);
      int envc = (int)number(ARG(2 + argc));
      char **envp = calloc((size_t)envc + 2, sizeof(char *));
      int has_home = 0;
      for (int k = 0; k < envc; k++) {
        envp[k] = ARG(3 + argc + k);
        has_home |= !strncmp(envp[k], "HOME=", 5);
      }
      if (!has_home) {
        static char home[PATH_MAX + 8];
        if (!have_user) resolve_user("", &user);
        snprintf(home, sizeof home, "HOME=%s", user.home);
        envp[envc] = home;
      }
      exec_process(argv, envp);
    } else {
      fail(127, "plan: unknown step %s", op);
    }
  }
  fail(127, "plan: no exec step");
#undef ARG
}

/* ------------------------------------------------------------------ the monitor */

static int pidfd_open(pid_t pid) { return (int)syscall(434, pid, 0); }

static void log_record(int fd, unsigned char stream, const char *data, size_t len) {
  /* native/logs.py's record: struct "<BdI" (stream, time, length), then the bytes */
  unsigned char header[13];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
  uint32_t n = (uint32_t)len;
  header[0] = stream;
  memcpy(header + 1, &now, 8);
  memcpy(header + 9, &n, 4);
  char *buf = malloc(13 + len);
  memcpy(buf, header, 13);
  memcpy(buf + 13, data, len);
  write_all(fd, buf, 13 + len);
  free(buf);
}

static void record_exit(const char *path, int status) {
  if (!path) return;
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int fd = open(tmp, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char line[128];
  int n = snprintf(line, sizeof line, "%d %lld.%09ld\n", status, (long long)ts.tv_sec, ts.tv_nsec);
  write_all(fd, line, (size_t)n);
  close(fd);
  rename(tmp, path);
}

/* The container's cgroups, when nobody else will remove them (the owner is gone, or the
 * spare was not needed). A cgroup just emptied can be busy for a moment: retry a while. */
static void remove_cgroups(int argc, char **argv) {
  for (int a = 2; a < argc; a++) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", argv[a]);
    char *slash = strrchr(dir, '/');
    if (!slash) continue;
    *slash = '\0';
    for (int attempt = 0; attempt < 200; attempt++) {
      if (rmdir(dir) == 0 || errno != EBUSY) break;
      struct timespec pause = {0, 5 * 1000 * 1000};
      nanosleep(&pause, NULL);
    }
  }
}

int main(int argc, char **argv) {
  /* argv[1]: the flags (see the top); then the cgroup files */
  /* Only fds 0-7 are ours: anything else the engine's process let us inherit must not reach
   * the container (an open directory would be a way out of its root). */
  syscall(SYS_close_range, 8U, ~0U, 0U);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGQUIT, SIG_IGN);
  signal(SIGTSTP, SIG_IGN);
  signal(SIGTTIN, SIG_IGN);
  signal(SIGTTOU, SIG_IGN);
  const char *flags = argc > 1 ? argv[1] : "-";
  int owner_fd = strchr(flags, 'o') ? OWNER_FD : -1;
  int pin_fd = -1;
  if (strchr(flags, 'u')) { /* rootless: the pid namespace and all below belong to it */
    if (setns(USERNS_FD, CLONE_NEWUSER) < 0) {
      event("failed 127 enter the user namespace: %s", strerror(errno));
      return 1;
    }
    close(USERNS_FD);
    pin_fd = PIN_FD;
    if (!strchr(flags, 'n')) ahead_flags &= ~CLONE_NEWNET;
  }

  int plan_p[2], ready_p[2], go_p[2], error_p[2], out_p[2], err_p[2];
  if (pipe2(plan_p, O_CLOEXEC) || pipe2(ready_p, O_CLOEXEC) || pipe2(go_p, O_CLOEXEC) ||
      pipe2(error_p, O_CLOEXEC) || pipe2(out_p, O_CLOEXEC) || pipe2(err_p, O_CLOEXEC)) {
    event("failed 127 pipe: %s", strerror(errno));
    return 1;
  }
  host_net_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (unshare(CLONE_NEWPID) < 0) {
    event("failed 127 unshare pid namespace: %s", strerror(errno));
    return 1;
  }
  pid_t child = fork();
  if (child < 0) {
    event("failed 127 fork: %s", strerror(errno));
    return 1;
  }
  if (child == 0) { /* PID 1 of the new pid namespace */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    error_fd = error_p[1];
    prepare_ahead(); /* while no plan is there yet */
    uint32_t len;
    if (read_full(plan_p[0], &len, 4) < 0) _exit(1);
    struct plan p = {0};
    p.len = len;
    p.data = malloc(len + 1);
    if (!p.data || read_full(plan_p[0], p.data, len) < 0) _exit(1);
    p.data[len] = '\0';
    if (split_plan(&p) < 0) fail(127, "plan: malformed");
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (dup2(null, 0) < 0 || dup2(out_p[1], 1) < 0 || dup2(err_p[1], 2) < 0) fail(127, "stdio: %s", strerror(errno));
    /* everything else is close-on-exec; the engine's fds 3-5 are not ours to keep */
    close(CONTROL_FD);
    close(EVENTS_FD);
    if (owner_fd >= 0) close(owner_fd);
    if (pin_fd >= 0) close(pin_fd);
    run_steps(p.fields, p.count, p.steps, ready_p[1], go_p[0]);
    _exit(127);
  }
  close(plan_p[0]);
  close(ready_p[1]);
  close(go_p[0]);
  close(error_p[1]);
  close(out_p[1]);
  close(err_p[1]);

  /* Into the container's cgroups ahead of time: on cgroup v1 this may wait for an RCU grace
   * period, which is why the engine starts us before it knows the container. */
  char pidbuf[32];
  int pidlen = snprintf(pidbuf, sizeof pidbuf, "%d", child);
  char join_error[512] = "";
  for (int a = 2; a < argc; a++) {
    int fd = open(argv[a], O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, pidbuf, (size_t)pidlen) != pidlen)
      snprintf(join_error, sizeof join_error, "join cgroup %s: %s", argv[a], strerror(errno));
    if (fd >= 0) close(fd);
  }

  /* The plan. */
  uint32_t len;
  struct pollfd wait_plan[2] = {{CONTROL_FD, POLLIN, 0}, {owner_fd, POLLIN, 0}};
  while (poll(wait_plan, owner_fd >= 0 ? 2 : 1, -1) < 0 && errno == EINTR) {
  }
  if ((owner_fd >= 0 && wait_plan[1].revents) || read_full(CONTROL_FD, &len, 4) < 0) {
    kill(child, SIGKILL); /* not needed after all */
    waitpid(child, NULL, 0);
    remove_cgroups(argc, argv);
    return 0;
  }
  struct plan p = {0};
  p.len = len;
  p.data = malloc(len + 1);
  if (!p.data || read_full(CONTROL_FD, p.data, len) < 0 || split_plan(&p) < 0) {
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    event("failed 127 plan: malformed or cut short");
    return 1;
  }
  if (p.persistent && owner_fd >= 0) {
    close(owner_fd);
    owner_fd = -1;
  }
  if (join_error[0]) {
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    event("failed 127 %s", join_error);
    return 1;
  }
  write_all(plan_p[1], &len, 4);
  write_all(plan_p[1], p.data, len);
  close(plan_p[1]);

  /* Until exec: the network handshake, then the exec's verdict (EOF = exec'd). */
  int child_fd = pidfd_open(child);
  char message[4096];
  size_t mlen = 0;
  int verdict = 0, ready_open = 1;
  while (!verdict) {
    struct pollfd fds[2] = {{error_p[0], POLLIN, 0}, {ready_open ? ready_p[0] : -1, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents) {
      char c;
      if (read(ready_p[0], &c, 1) == 1 && c == 'r') {
        event("ready %d", child);
        char go;
        if (read(CONTROL_FD, &go, 1) != 1 || go != 'g') { /* the engine gave up */
          kill(child, SIGKILL);
          waitpid(child, NULL, 0);
          return 1;
        }
        write_all(go_p[1], "g", 1);
      } else {
        ready_open = 0;
      }
    }
    if (fds[0].revents) {
      ssize_t n = read(error_p[0], message + mlen, sizeof message - 1 - mlen);
      if (n > 0) {
        mlen += (size_t)n;
        if (mlen < sizeof message - 1) continue;
      }
      verdict = 1;
    }
  }
  close(go_p[1]);
  close(ready_p[0]);
  close(error_p[0]);
  if (mlen > 0) {
    message[mlen] = '\0';
    int status;
    waitpid(child, &status, 0);
    char *nl = strchr(message, '\n');
    int code = atoi(message);
    event("failed %d %s", code ? code : 127, nl ? nl + 1 : message);
    return 1;
  }
  event("started %d", child);
  /* Hold the container's mount namespace: when the container exits, its mounts are then torn
   * down when we let go, after the exit is told, rather than before its parent can see it. */
  char ns_path[64];
  snprintf(ns_path, sizeof ns_path, "/proc/%d/ns/mnt", child);
  int mnt_hold = open(ns_path, O_RDONLY | O_CLOEXEC);

  /* Relay the output to the log until the container has ended. */
  int log_fd = p.log_path ? open(p.log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640) : -1;
  int streams[2] = {out_p[0], err_p[0]};
  int status = 0, exited = 0, owner_dead = 0;
  static char buf[65536];
  while (streams[0] >= 0 || streams[1] >= 0 || !exited) {
    struct pollfd fds[4] = {{streams[0], POLLIN, 0}, {streams[1], POLLIN, 0},
                            {exited ? -1 : child_fd, POLLIN, 0}, {owner_fd, POLLIN, 0}};
    if (poll(fds, 4, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int s = 0; s < 2; s++) {
      if (streams[s] < 0 || !fds[s].revents) continue;
      ssize_t n = read(streams[s], buf, sizeof buf);
      if (n <= 0) {
        close(streams[s]);
        streams[s] = -1;
      } else if (log_fd >= 0) {
        log_record(log_fd, (unsigned char)(s + 1), buf, (size_t)n);
      }
    }
    if (fds[2].revents && !exited) {
      if (waitpid(child, &status, 0) == child) exited = 1;
    }
    if (owner_fd >= 0 && fds[3].revents) { /* the owner is gone: so is its container */
      owner_dead = 1;
      kill(child, SIGKILL);
      close(owner_fd);
      owner_fd = -1;
    }
  }
  if (!exited) waitpid(child, &status, 0);
  if (owner_dead) { /* the next engine's sweep removes the rest */
    remove_cgroups(argc, argv);
    return 0;
  }
  record_exit(p.exit_path, status);
  event("exited %d", status);
  if (mnt_hold >= 0) close(mnt_hold);
  return 0;
}
