/**
 * @file kvoffload.hpp
 * @brief Umbrella header: everything public in kvoffload.
 */
#pragma once

#include <kvoffload/error.hpp>
#include <kvoffload/factory.hpp>
#include <kvoffload/offloading_manager.hpp>
#include <kvoffload/transfer/transfer.hpp>
#include <kvoffload/types.hpp>
#include <kvoffload/version.hpp>
