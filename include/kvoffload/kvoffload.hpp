/**
 * @file kvoffload.hpp
 * @brief Umbrella header: everything public in kvoffload.
 */
#pragma once

#include <kvoffload/async_manager.hpp>
#include <kvoffload/concurrent_manager.hpp>
#include <kvoffload/density_manager.hpp>
#include <kvoffload/error.hpp>
#include <kvoffload/factory.hpp>
#include <kvoffload/filter_manager.hpp>
#include <kvoffload/metrics.hpp>
#include <kvoffload/offloader.hpp>
#include <kvoffload/offloading_manager.hpp>
#include <kvoffload/tiered_manager.hpp>
#include <kvoffload/transfer/transfer.hpp>
#include <kvoffload/types.hpp>
#include <kvoffload/version.hpp>
#include <kvoffload/weighted_lru.hpp>
