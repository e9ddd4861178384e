/* The graph that pair_style ictp hands to the exported model (ictp_export/lammps_model.py),
 * built from plain inputs: positions, tags, a tag -> local atom map and neighbour lists.  Used by
 * the pair style and, through pybind11 (graph_module.cpp), by the Python tests.
 *
 *  owner   A ghost that is an image of one of this rank's own atoms (always so on one rank) is
 *          replaced by that atom; the edge keeps the image's position through a shift vector
 *          x[j] - x[owner[j]].  Other ghosts (owned by other ranks) take part as atoms of their own.
 *  level   The distance in layers from the local atoms: 0 for local atoms, t for atoms within one
 *          cutoff of a level t-1 atom.  Layer t must update the atoms of level <= T - 1 - t;
 *          atoms beyond level T are not needed.
 *  order   Atoms are renumbered by level (ties by index) and each layer works on a prefix:
 *          receivers[t] = number of atoms of level <= T - 1 - t; receivers[T-1] = local atoms.
 *  edges   Every pair closer than the cutoff whose centre has level <= T - 1, in new indices,
 *          sorted by centre (the neighbour list's order within a centre).
 *
 * Part of ictp; GPL-2.0 like LAMMPS (see pair_ictp/LICENSE).
 */

#ifndef ICTP_GRAPH_BUILDER_H
#define ICTP_GRAPH_BUILDER_H

#include <climits>
#include <cmath>
#include <cstdint>
#include <vector>

namespace ictp {

// Two atoms closer than this are one atom written twice (as ictp_model.data.neighbours.MIN_DISTANCE).
constexpr double MIN_DISTANCE = 0.1;

// What stops a build: two atoms closer than MIN_DISTANCE, or a needed centre without a neighbour list.
struct Problem {
  enum Kind { NONE, OVERLAP, NO_LIST } kind = NONE;
  int i = -1, j = -1;    // input indices of the atoms concerned
  double distance = 0.0;
};

class GraphBuilder {
 public:
  // outputs
  std::vector<int> owner;            // input index -> the input index that stands for it
  std::vector<int> level;            // input index -> level (INT_MAX: not needed)
  std::vector<int> order;            // new index -> input index
  std::vector<long> new_index;       // input index -> new index (-1: not needed)
  std::vector<int64_t> receivers;    // per layer
  std::vector<int64_t> centres, neighbours;    // edges, new indices
  std::vector<double> shifts;                  // 3 per edge
  // scratch
  std::vector<int> list_index;       // input index -> its row in the neighbour list (-1: none)
  std::vector<char> part;            // input index -> whether the atom takes part

  /* x: nall x 3 positions, contiguous; tag: nall atom IDs; local_of(tag): the local index
   * (< nlocal) of the atom with that ID, or -1 (one that always returns -1 treats every ghost as
   * an atom of its own); takes_part(i): false for atoms this model does not handle (types set to
   * NULL under pair_style hybrid; the neighbour list then leaves them out too); list: the
   * neighbour list of local and ghost atoms, with size(), centre(ii), count(ii),
   * neighbour(ii, jj).  Returns the first problem met (the outputs are then incomplete). */
  template <class Tag, class LocalOf, class TakesPart, class List>
  Problem build(const double *x, const Tag *tag, int nlocal, int nall, LocalOf local_of, TakesPart takes_part,
                const List &list, double cutoff, int num_layers)
  {
    find_owners(tag, nlocal, nall, local_of);
    part.resize(nall);
    for (int i = 0; i < nall; i++) part[i] = takes_part(i) ? 1 : 0;
    find_levels(x, nlocal, list, cutoff * cutoff, num_layers);
    renumber(nall, num_layers);
    return collect_edges(x, list, cutoff * cutoff, num_layers);
  }

  long num_used() const { return static_cast<long>(order.size()); }
  long num_edges() const { return static_cast<long>(centres.size()); }

  // bytes held (capacity), for memory_usage()
  double bytes() const
  {
    return capacity(owner) + capacity(level) + capacity(order) + capacity(new_index) + capacity(receivers) +
        capacity(centres) + capacity(neighbours) + capacity(shifts) + capacity(list_index) + capacity(part);
  }

 private:
  template <typename T> static double capacity(const std::vector<T> &v)
  {
    return static_cast<double>(v.capacity() * sizeof(T));
  }

  static double distance2(const double *x, int i, int j)
  {
    double dx = x[3 * j] - x[3 * i], dy = x[3 * j + 1] - x[3 * i + 1], dz = x[3 * j + 2] - x[3 * i + 2];
    return dx * dx + dy * dy + dz * dz;
  }

  template <class Tag, class LocalOf> void find_owners(const Tag *tag, int nlocal, int nall, LocalOf local_of)
  {
    owner.resize(nall);
    for (int k = 0; k < nall; k++) {
      owner[k] = k;
      if (k >= nlocal) {
        int m = local_of(tag[k]);
        if (m >= 0 && m < nlocal) owner[k] = m;
      }
    }
  }

  template <class List> void find_levels(const double *x, int nlocal, const List &list, double cut2, int num_layers)
  {
    level.assign(owner.size(), INT_MAX);
    for (int i = 0; i < nlocal; i++)
      if (part[i]) level[i] = 0;
    for (int t = 1; t <= num_layers; t++)
      for (int ii = 0; ii < list.size(); ii++) {
        int i = list.centre(ii);
        if (owner[i] != i || level[i] != t - 1) continue;
        for (int jj = 0; jj < list.count(ii); jj++) {
          int j = list.neighbour(ii, jj);
          if (part[j] && distance2(x, i, j) < cut2 && level[owner[j]] > t) level[owner[j]] = t;
        }
      }
  }

  void renumber(int nall, int num_layers)
  {
    order.clear();
    new_index.assign(nall, -1);
    receivers.assign(num_layers, 0);
    for (int t = 0; t <= num_layers; t++) {
      for (int i = 0; i < nall; i++)
        if (owner[i] == i && level[i] == t) {
          new_index[i] = static_cast<long>(order.size());
          order.push_back(i);
        }
      for (int layer = 0; layer < num_layers; layer++)
        if (t == num_layers - 1 - layer) receivers[layer] = static_cast<int64_t>(order.size());
    }
  }

  template <class List> Problem collect_edges(const double *x, const List &list, double cut2, int num_layers)
  {
    const int nall = static_cast<int>(owner.size());
    list_index.assign(nall, -1);
    for (int ii = 0; ii < list.size(); ii++) list_index[list.centre(ii)] = ii;
    centres.clear();
    neighbours.clear();
    shifts.clear();
    const double min2 = MIN_DISTANCE * MIN_DISTANCE;
    Problem problem;
    for (long k = 0; k < num_used(); k++) {
      int i = order[k];
      if (level[i] >= num_layers) break;    // atoms are sorted by level
      int ii = list_index[i];
      if (ii < 0) {
        problem.kind = Problem::NO_LIST;
        problem.i = i;
        return problem;
      }
      for (int jj = 0; jj < list.count(ii); jj++) {
        int j = list.neighbour(ii, jj);
        if (!part[j]) continue;
        double r2 = distance2(x, i, j);
        if (r2 < min2) {
          problem.kind = Problem::OVERLAP;
          problem.i = i;
          problem.j = j;
          problem.distance = std::sqrt(r2);
          return problem;
        }
        if (r2 < cut2) {
          int o = owner[j];
          centres.push_back(k);
          neighbours.push_back(new_index[o]);
          for (int d = 0; d < 3; d++) shifts.push_back(x[3 * j + d] - x[3 * o + d]);
        }
      }
    }
    return problem;
  }
};

}    // namespace ictp

#endif
