# Layering is enforced by include paths. Each library sees an include root that holds
# only its own folder (as a symlink) plus, through its link dependencies, the roots of
# the layers below it. A header of a higher layer is therefore not found, and a
# wrong-way include fails to build.
#
#   rp_layer(<target> <folder>)   e.g. rp_layer(rp_protocol protocol)
function(rp_layer target folder)
  set(root ${CMAKE_BINARY_DIR}/layers/${target})
  get_filename_component(parent ${root}/${folder} DIRECTORY)
  file(MAKE_DIRECTORY ${parent})
  if(NOT EXISTS ${root}/${folder})
    file(CREATE_LINK ${CMAKE_SOURCE_DIR}/${folder} ${root}/${folder} SYMBOLIC)
  endif()
  target_include_directories(${target} PUBLIC ${root})
endfunction()
