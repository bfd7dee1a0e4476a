/* dm-verity-setup NAME DATA_DEV DATA_BLOCKS ROOT_HASH SALT
 *
 * Creates the read-only device-mapper device NAME with one dm-verity target over DATA_DEV (4096-byte
 * data and hash blocks, SHA-256, format version 1, the hash tree right after the DATA_BLOCKS data
 * blocks on the same device, no superblock: what host_tools/image/verity.py writes) and prints its
 * node name ("dm-0"). The initramfs has no dmsetup/veritysetup; this is the three ioctls they would
 * issue (Documentation/admin-guide/device-mapper/verity.rst; include/uapi/linux/dm-ioctl.h):
 * DM_DEV_CREATE, DM_TABLE_LOAD, DM_DEV_SUSPEND (resume). A block whose hash does not match then
 * reads as an I/O error. Built static by host_tools/image/dmhelper.py; exit status 1 with a message
 * naming the failed step on any error. */
#include <errno.h>
#include <fcntl.h>
#include <linux/dm-ioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define BUF_SIZE 16384

static char buf[BUF_SIZE] __attribute__((aligned(8)));

static struct dm_ioctl *header(const char *name)
{
	struct dm_ioctl *io = (struct dm_ioctl *)buf;
	memset(buf, 0, sizeof buf);
	io->version[0] = DM_VERSION_MAJOR;
	io->version[1] = 0;
	io->version[2] = 0;
	io->data_size = sizeof buf;
	io->data_start = sizeof(struct dm_ioctl);
	strncpy(io->name, name, DM_NAME_LEN - 1);
	return io;
}

static int fail(const char *step, const char *what)
{
	fprintf(stderr, "dm-verity-setup: %s: %s: %s\n", step, what, strerror(errno));
	return 1;
}

static int hex_ok(const char *s, size_t len)
{
	size_t i;
	if (strlen(s) != len)
		return 0;
	for (i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

int main(int argc, char **argv)
{
	struct dm_ioctl *io;
	struct dm_target_spec *spec;
	char *params, *end;
	unsigned long long blocks;
	unsigned int minor_no;
	int fd, n;

	if (argc != 6) {
		fprintf(stderr, "usage: dm-verity-setup NAME DATA_DEV DATA_BLOCKS ROOT_HASH SALT\n");
		return 2;
	}
	errno = 0;
	blocks = strtoull(argv[3], &end, 10);
	if (errno || *end || blocks == 0) {
		fprintf(stderr, "dm-verity-setup: DATA_BLOCKS %s is not a positive number\n", argv[3]);
		return 2;
	}
	if (!hex_ok(argv[4], 64) || !hex_ok(argv[5], 64)) {
		fprintf(stderr, "dm-verity-setup: ROOT_HASH and SALT must be 64 lowercase hex digits\n");
		return 2;
	}
	fd = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fail("open", "/dev/mapper/control");

	io = header(argv[1]);
	if (ioctl(fd, DM_DEV_CREATE, io) < 0)
		return fail("DM_DEV_CREATE", argv[1]);
	minor_no = minor(io->dev);

	io = header(argv[1]);
	io->flags = DM_READONLY_FLAG;
	io->target_count = 1;
	spec = (struct dm_target_spec *)(buf + io->data_start);
	spec->sector_start = 0;
	spec->length = blocks * 8; /* 512-byte sectors */
	strncpy(spec->target_type, "verity", DM_MAX_TYPE_NAME - 1);
	params = (char *)(spec + 1);
	/* version data_dev hash_dev data_block hash_block num_data_blocks hash_start_block alg
	   root_digest salt */
	n = snprintf(params, BUF_SIZE - io->data_start - sizeof *spec,
		     "1 %s %s 4096 4096 %llu %llu sha256 %s %s", argv[2], argv[2], blocks, blocks,
		     argv[4], argv[5]);
	if (n < 0 || (size_t)n >= BUF_SIZE - io->data_start - sizeof *spec) {
		fprintf(stderr, "dm-verity-setup: table line too long\n");
		return 1;
	}
	spec->next = 0;
	io->data_size = io->data_start + sizeof *spec + ((n + 1 + 7) & ~7);
	if (ioctl(fd, DM_TABLE_LOAD, io) < 0)
		return fail("DM_TABLE_LOAD", argv[1]);

	io = header(argv[1]);
	if (ioctl(fd, DM_DEV_SUSPEND, io) < 0) /* no DM_SUSPEND_FLAG: resume, i.e. activate */
		return fail("DM_DEV_SUSPEND (resume)", argv[1]);
	close(fd);
	printf("dm-%u\n", minor_no);
	return 0;
}
