/**
 * @file transfer.hpp
 * @brief Umbrella header of the transfer engine.
 */
#pragma once

#include <kvoffload/transfer/kv_layout.hpp>
#include <kvoffload/transfer/pinned_host_pool.hpp>
#include <kvoffload/transfer/transfer_engine.hpp>
#include <kvoffload/transfer/transfer_request.hpp>
