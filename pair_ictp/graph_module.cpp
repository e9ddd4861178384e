/* Python binding of the pair style's graph builder (graph_builder.h), so that the tests check the
 * C++ code LAMMPS runs against a brute-force reference.  Built beside the plugin as ictp_graph.
 *
 * Part of ictp; GPL-2.0 like LAMMPS (see pair_ictp/LICENSE).
 */

#include "graph_builder.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <climits>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace py = pybind11;
using Ints = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using Doubles = py::array_t<double, py::array::c_style | py::array::forcecast>;

namespace {

// a neighbour list in CSR form: centre atoms, row offsets, neighbour indices
struct CsrList {
  const int64_t *centres, *offsets, *indices;
  int rows;
  int size() const { return rows; }
  int centre(int ii) const { return static_cast<int>(centres[ii]); }
  int count(int ii) const { return static_cast<int>(offsets[ii + 1] - offsets[ii]); }
  int neighbour(int ii, int jj) const { return static_cast<int>(indices[offsets[ii] + jj]); }
};

template <typename T> py::array_t<T> to_array(const std::vector<T> &v)
{
  py::array_t<T> out(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

py::dict build_graph(Doubles x, Ints tag, int nlocal, Ints centres, Ints offsets, Ints indices, double cutoff,
                     int num_layers, bool map_images)
{
  const int nall = static_cast<int>(x.shape(0));
  if (x.ndim() != 2 || x.shape(1) != 3) throw std::invalid_argument("x must have shape (nall, 3)");
  if (tag.size() != nall) throw std::invalid_argument("tag must have one entry per atom");
  if (offsets.size() != centres.size() + 1) throw std::invalid_argument("offsets must have len(centres) + 1 entries");
  if (nlocal < 0 || nlocal > nall) throw std::invalid_argument("nlocal must be in [0, nall]");
  std::unordered_map<int64_t, int> local;
  for (int i = 0; i < nlocal; i++) local[tag.data()[i]] = i;
  auto local_of = [&](int64_t t) {
    auto it = local.find(t);
    return map_images && it != local.end() ? it->second : -1;
  };
  CsrList list{centres.data(), offsets.data(), indices.data(), static_cast<int>(centres.size())};
  ictp::GraphBuilder graph;
  auto everyone = [](int) { return true; };
  auto problem = graph.build(x.data(), tag.data(), nlocal, nall, local_of, everyone, list, cutoff, num_layers);
  if (problem.kind == ictp::Problem::OVERLAP)
    throw std::domain_error("atoms " + std::to_string(problem.i) + " and " + std::to_string(problem.j) +
                            " overlap");
  if (problem.kind == ictp::Problem::NO_LIST)
    throw std::domain_error("atom " + std::to_string(problem.i) + " has no neighbour list");
  std::vector<int64_t> level(graph.level.begin(), graph.level.end());
  for (auto &l : level)
    if (l == INT_MAX) l = -1;
  const long nedges = graph.num_edges();
  py::array_t<int64_t> edge_index({static_cast<py::ssize_t>(2), static_cast<py::ssize_t>(nedges)});
  std::copy(graph.centres.begin(), graph.centres.end(), edge_index.mutable_data());
  std::copy(graph.neighbours.begin(), graph.neighbours.end(), edge_index.mutable_data() + nedges);
  py::dict out;
  out["owner"] = to_array(std::vector<int64_t>(graph.owner.begin(), graph.owner.end()));
  out["level"] = to_array(level);
  out["order"] = to_array(std::vector<int64_t>(graph.order.begin(), graph.order.end()));
  out["receivers"] = to_array(graph.receivers);
  out["edge_index"] = edge_index;
  out["shifts"] = to_array(graph.shifts).reshape({static_cast<py::ssize_t>(nedges), static_cast<py::ssize_t>(3)});
  return out;
}

}    // namespace

PYBIND11_MODULE(ictp_graph, m)
{
  m.doc() = "The graph builder of pair_style ictp (pair_ictp/graph_builder.h)";
  m.def("build_graph", &build_graph, py::arg("x"), py::arg("tag"), py::arg("nlocal"), py::arg("centres"),
        py::arg("offsets"), py::arg("indices"), py::arg("cutoff"), py::arg("num_layers"), py::arg("map_images") = true,
        "Owners, levels, order, receivers, edge_index (2, E) and shifts (E, 3) as pair_style ictp builds them.\n"
        "x (nall, 3); tag (nall,); the neighbour list of each centre in CSR form (centres, offsets, indices).\n"
        "Raises ValueError for overlapping atoms or a needed centre without a neighbour list.");
  py::register_exception<std::domain_error>(m, "GraphError", PyExc_ValueError);
}
